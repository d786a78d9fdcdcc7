"""Source connectors, one module per `--kind`, as lhotse recipes; `base.connector` finds one.

Each module exposes `inventory(path: Path, options) -> Iterator[ItemGroup]`; the
protocol, `ItemGroup` and the helpers every connector shares are in `base.py`.
"""
