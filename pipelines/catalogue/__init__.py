"""The DuckDB catalogue: the lake's tables and views in one file, written by one writer.

The catalogue is derived from the lake's files (and the project's source list), so
it can be rebuilt at any time; its tables and views are documented in
`docs/catalogue.md`. Import each name from the module that defines it:

- `tables.py`: the schema version, every table's columns (those mirroring a
  contract derived from `schemas/`), the views, and the DDL that creates them.
- `scan.py`: the lake files the catalogue reflects (`scan_lake`, `LakeFile`) and
  the entities (unit, source, release, run, evaluation) they belong to.
- `lock.py`: the writer lock beside the catalogue and DuckDB connections that wait
  out a conflicting lock.
- `load.py`: loading each entity's rows from its lake files, the same way for a
  rebuild and an update.
- `build.py`: the writers, `rebuild_catalogue` and `update_catalogue`, and the
  `CatalogueStats` they return.
- `read.py`: the readers, `open_catalogue_readonly` and `query_catalogue`.
- `errors.py`: `CatalogueError` and `CatalogueLockedError`.
"""
