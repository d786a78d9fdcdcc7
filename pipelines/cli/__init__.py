"""The `voxlake` command line: commands that start no Dagster run, one module per topic.

`app.py` assembles them; `render.py` (with `render_fit.py`, `render_tables.py`,
`render_lineage.py`) does all the printing; `options.py` holds what every command
shares (`--project`, user errors); `logs.py` routes log records and `--verbose`;
`notices.py` holds the warnings said once per run. `assets/cli.py` adds `run`, `ui`
and `demo` and is the console entry point. The console rules: `docs/console.md`.
"""
