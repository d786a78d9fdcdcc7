"""The project's GLM-4-Voice tokenizer checkpoint: find it, write the demo one, load it once.

The default checkpoint is a random-weight demo checkpoint voxlake writes
itself; a real one is a `THUDM/glm-4-voice-tokenizer` folder the user points
`tokenizer.checkpoint` at. Loading is cached per content hash. The functions
take the project folder and its `tokenizer:` settings rather than a `Project`,
so `pipelines.project` can write the demo checkpoint on `init` without an
import cycle; torch is imported only when a checkpoint is written or loaded.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from schemas.tokens import DEMO_TOKENIZER_DIR, TokenizerConfig

if TYPE_CHECKING:
    from inference.glm4voice import GLM4VoiceTokenizer

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"


def checkpoint_dir(project_dir: Path, settings: TokenizerConfig) -> Path:
    """The tokenizer checkpoint folder (`tokenizer.checkpoint`, relative to the project)."""
    path = Path(settings.checkpoint).expanduser()
    return path if path.is_absolute() else project_dir / path


def ensure_checkpoint(project_dir: Path, settings: TokenizerConfig) -> Path:
    """The checkpoint folder; the default demo checkpoint is written when it is missing."""
    path = checkpoint_dir(project_dir, settings)
    if (path / WEIGHTS_FILE).exists():
        return path
    if settings.checkpoint == DEMO_TOKENIZER_DIR:
        from inference.glm4voice import write_demo_checkpoint

        log.warning("writing the random-weight demo tokenizer checkpoint to %s", path)
        write_demo_checkpoint(path)
        return path
    raise FileNotFoundError(
        f"tokenizer checkpoint {path} has no {WEIGHTS_FILE}; download "
        "THUDM/glm-4-voice-tokenizer there, or point tokenizer.checkpoint in voxlake.yaml "
        "at a checkpoint folder"
    )


def configured_tokenizer_sha256(project_dir: Path, settings: TokenizerConfig) -> str | None:
    """Content hash of the configured checkpoint, or None while it does not exist yet."""
    from inference.glm4voice import tokenizer_checkpoint_sha256

    folder = checkpoint_dir(project_dir, settings)
    return tokenizer_checkpoint_sha256(folder) if (folder / WEIGHTS_FILE).exists() else None


@functools.lru_cache(maxsize=2)
def _cached_tokenizer(
    path: str, sha256: str, device: str, dtype: str, max_batch_frames: int
) -> GLM4VoiceTokenizer:
    from inference.glm4voice import load_tokenizer

    # Keyed by content hash: a replaced checkpoint in the same folder loads anew.
    del sha256
    return load_tokenizer(
        Path(path),
        device=None if device == "auto" else device,
        dtype=dtype,
        max_batch_frames=max_batch_frames,
    )


def project_tokenizer(project_dir: Path, settings: TokenizerConfig) -> GLM4VoiceTokenizer:
    """The project's tokenizer, loaded once per process and content hash."""
    from inference.glm4voice import tokenizer_checkpoint_sha256

    path = ensure_checkpoint(project_dir, settings)
    return _cached_tokenizer(
        str(path),
        tokenizer_checkpoint_sha256(path),
        settings.device,
        settings.dtype,
        settings.max_batch_frames,
    )
