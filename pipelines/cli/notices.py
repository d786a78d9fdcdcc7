"""The warnings that apply to a whole run, printed once at the top of its summary
(`render.print_notices`) instead of by every step that meets them.

The Dagster steps still log theirs (in the run's log files); the console says it once.
"""

from __future__ import annotations

import json

from pipelines.project import Project
from pipelines.tokenizer import checkpoint_dir

DEMO_TOKENIZER_WARNING = (
    "codes come from the random-weight demo tokenizer: they carry no meaning "
    "(tokenizer.checkpoint in voxlake.yaml names a real one)"
)
"""The one demo-tokenizer warning of a run."""


def uses_demo_tokenizer(project: Project) -> bool:
    """Whether the project's tokenizer checkpoint is voxlake's random-weight demo one
    (`voxlake_demo` in its config.json; a checkpoint not written yet is the demo's when
    the configuration names the default)."""
    folder = checkpoint_dir(project.directory, project.config.tokenizer)
    config = folder / "config.json"
    if not config.exists():
        from schemas.tokens import DEMO_TOKENIZER_DIR

        return project.config.tokenizer.checkpoint == DEMO_TOKENIZER_DIR
    try:
        return "voxlake_demo" in json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def demo_tokenizer_warning(project: Project) -> str | None:
    """The demo-tokenizer warning for this project, or None when its tokenizer is real."""
    return DEMO_TOKENIZER_WARNING if uses_demo_tokenizer(project) else None
