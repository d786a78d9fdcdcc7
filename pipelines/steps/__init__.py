"""One module per asset, named after it: the work of asset `X` is `pipelines/steps/X.py`.

`inventory`, `manifest`, `quality`, `tokens`, `shards`, `catalogue`, `quality_report`,
`release`, `evaluation`; the four training stages share `train`. Each module exposes
its entry function and pure `check_<name>()` functions that return a
`checks.CheckOutcome` for each of its asset's checks, so `assets/` only maps results to
Dagster objects and the command line and the audit can run the same checks.
"""
