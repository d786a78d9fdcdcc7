"""The quality report: one self-contained HTML page (and a markdown summary) over quality decisions.

One module per part; import a name from the module that defines it (this package
re-exports nothing). Names with a leading underscore are shared between these modules
only; nothing outside the package imports them.

- `quality.report.html`: page assembly, `render_report` (inline CSS, a
  Content-Security-Policy that forbids every fetch and script).
- `quality.report.sections`: the page's sections as HTML fragments (header, per source,
  by language, distributions, rejections, the two listening tables).
- `quality.report.plots`: histograms as PNG data URIs; `png_data_uri`, the one PNG
  data-URI helper (the training and evaluation summaries use it too).
- `quality.report.rows`: `normalize_rows` (the columns the report reads) and
  `select_clips` with `Clip` (which utterances the listening tables play).
- `quality.report.formatting`: escaping and number, hour and table formatting.
- `quality.report.summary`: `markdown_summary`, per source, for Dagster metadata.

Reading the lake and decoding the clips' audio is `pipelines.steps.quality_report`'s job.
"""
