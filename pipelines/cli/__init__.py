"""The `voxlake` command line: commands that start no Dagster run, one module per topic.

`app.py` assembles them; `render.py` does all the printing; `options.py` holds what every
command shares. `assets/cli.py` adds `run`, `ui` and `demo` and is the console entry point.
"""
