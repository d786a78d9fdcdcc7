"""Load a GLM-4-Voice tokenizer checkpoint folder, strictly, from safetensors only.

A checkpoint folder holds `config.json`, `model.safetensors` and
`preprocessor_config.json`. `load_tokenizer` builds the encoder for the
config (always encoder-only, as upstream's `load_quantize_encoder` does),
checks every tensor name and shape before reading any weight, and loads the
weights straight into place (no second copy in memory). Two layouts load:

- the released one, saved from `WhisperVQEncoder` itself: no prefix, exactly
  the encoder's keys (with `ema_count` / `ema_weight` when
  `quantize_ema_decay` is set);
- a full model's, with `model.encoder.` prefixes: the prefix is stripped, and
  `layer_norm.*`, layers from `quantize_position` on, `model.decoder.*` and
  `proj_out.*` are dropped (upstream's `load_quantize_encoder`). An
  unprefixed checkpoint whose config says `quantize_encoder_only: false` may
  carry those later layers and `layer_norm` too; they are dropped likewise.

Anything else missing, unexpected or mis-shaped is a `CheckpointError`
listing every such key with expected and found shapes. Pickle files
(`pytorch_model.bin`) are never read: unpickling can run code.

The folder's file names and its content hash (`tokenizer_checkpoint_sha256`)
are in `files.py`, which does not need torch.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from inference.glm4voice.config import GLM4VoiceTokenizerConfig
from inference.glm4voice.features import load_feature_extractor
from inference.glm4voice.files import (
    CONFIG_FILE,
    PREPROCESSOR_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    _require_files,
    tokenizer_checkpoint_sha256,
)
from inference.glm4voice.model import ROWS_PER_CALL, WhisperVQEncoder
from inference.glm4voice.tokenizer import GLM4VoiceTokenizer

log = logging.getLogger(__name__)

FULL_PREFIX = "model.encoder."
# Parts of a full (ForConditionalGeneration) checkpoint the tokenizer never uses.
_FULL_MODEL_OTHER_PREFIXES = ("model.decoder.", "proj_out.")
_LAYER_KEY = re.compile(r"^layers\.(\d+)\.")

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}


# --- key checking --------------------------------------------------------------------------


@dataclass
class KeyPlan:
    """How a safetensors file's tensors map onto the encoder.

    `sources`: encoder key → file key; `dropped`: file keys left out on
    purpose; `missing` (encoder key → expected shape), `unexpected` (file key
    → shape) and `mismatched` (encoder key → (expected, found)) are errors.
    """

    layout: str
    sources: dict[str, str] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    missing: dict[str, tuple[int, ...]] = field(default_factory=dict)
    unexpected: dict[str, tuple[int, ...]] = field(default_factory=dict)
    mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing is missing, unexpected or mis-shaped."""
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self) -> str:
        """Every problem, one key per line, with shapes."""

        def shape(value: tuple[int, ...]) -> str:
            return "[" + ", ".join(str(v) for v in value) + "]"

        lines = []
        if self.missing:
            lines.append(f"{len(self.missing)} missing:")
            lines += [f"  {k} {shape(s)}" for k, s in sorted(self.missing.items())]
        if self.unexpected:
            lines.append(f"{len(self.unexpected)} unexpected:")
            lines += [f"  {k} {shape(s)}" for k, s in sorted(self.unexpected.items())]
        if self.mismatched:
            lines.append(f"{len(self.mismatched)} with the wrong shape:")
            lines += [f"  {k}: expected {shape(e)}, found {shape(f)}"
                      for k, (e, f) in sorted(self.mismatched.items())]
        return "\n".join(lines)


def plan_keys(
    file_shapes: dict[str, tuple[int, ...]],
    expected_shapes: dict[str, tuple[int, ...]],
    config: GLM4VoiceTokenizerConfig,
) -> KeyPlan:
    """Match a file's tensor names and shapes against the encoder's (see module docstring)."""
    prefixed = any(key.startswith(FULL_PREFIX) for key in file_shapes)
    plan = KeyPlan(layout="full model (model.encoder. prefix)" if prefixed else
                   "encoder only (no prefix)")
    # the later layers and the final norm of a full encoder exist but are not used
    full_encoder = prefixed or not config.quantize_encoder_only
    for key, found in file_shapes.items():
        if prefixed:
            if key.startswith(_FULL_MODEL_OTHER_PREFIXES):
                plan.dropped.append(key)
                continue
            if not key.startswith(FULL_PREFIX):
                plan.unexpected[key] = found
                continue
            name = key[len(FULL_PREFIX):]
        else:
            name = key
        if name in expected_shapes:
            plan.sources[name] = key
            if tuple(expected_shapes[name]) != tuple(found):
                plan.mismatched[name] = (tuple(expected_shapes[name]), tuple(found))
            continue
        layer = _LAYER_KEY.match(name)
        if full_encoder and (
            name.startswith("layer_norm.")
            or (layer and config.quantize_position <= int(layer.group(1)) < config.encoder_layers)
        ):
            plan.dropped.append(key)
            continue
        plan.unexpected[key] = found
    for name, shape in expected_shapes.items():
        if name not in plan.sources:
            plan.missing[name] = tuple(shape)
    return plan


def resolve_device(device: str | torch.device | None) -> torch.device:
    """None or "auto": CUDA when available, else CPU; otherwise the device named."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """float32 unless half precision is asked for, and half precision only on CUDA.

    On any other device a bfloat16/float16 request falls back to float32 with a
    warning, so one project setting serves CPU and GPU machines.
    """
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, not {dtype!r}")
        dtype = _DTYPES[dtype]
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"unsupported dtype {dtype}")
    if dtype != torch.float32 and device.type != "cuda":
        log.warning("%s requested on %s: half precision is used on CUDA only; using float32",
                    dtype, device)
        return torch.float32
    return dtype


def build_encoder(
    config: GLM4VoiceTokenizerConfig, *, device: torch.device | str = "cpu",
    rows_per_call: int | None = None,
) -> WhisperVQEncoder:
    """The encoder-only model for a tokenizer config, with uninitialised (meta) parameters.

    `rows_per_call`: None for the device's default (`ROWS_PER_CALL`), 0 for
    one call per product (not batch-invariant). Load weights with
    `load_state_dict(..., assign=True)`.
    """
    config.check_tokenizer()
    device = torch.device(device)
    per_call: int | None
    if rows_per_call == 0:
        per_call = None
    else:
        per_call = rows_per_call or ROWS_PER_CALL.get(device.type, ROWS_PER_CALL["cpu"])
    with torch.device("meta"):
        return WhisperVQEncoder(config.replace(quantize_encoder_only=True), rows_per_call=per_call)


def load_encoder(
    directory: Path,
    config: GLM4VoiceTokenizerConfig,
    *,
    device: torch.device,
    dtype: torch.dtype,
    rows_per_call: int | None = None,
) -> WhisperVQEncoder:
    """Build the encoder and load `model.safetensors` into it (checked first, then read)."""
    path = Path(directory) / WEIGHTS_FILE
    model = build_encoder(config, device=device, rows_per_call=rows_per_call)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
            plan = plan_keys(shapes, expected, config)
            if not plan.ok:
                raise CheckpointError(
                    f"{path} does not match the encoder {CONFIG_FILE} describes "
                    f"(layout: {plan.layout}):\n{plan.describe()}"
                )
            if plan.dropped:
                log.info("%s: left out %d tensors the tokenizer does not use (%s layout)",
                         path, len(plan.dropped), plan.layout)
            state = {}
            for name, key in plan.sources.items():
                tensor = handle.get_tensor(key)
                if tensor.is_floating_point():
                    tensor = tensor.to(dtype)
                state[name] = tensor.to(device)
    except SafetensorError as error:
        raise CheckpointError(f"{path} is not a readable safetensors file: {error}") from error
    model.load_state_dict(state, strict=True, assign=True)
    model.requires_grad_(False)
    return model.eval()


def load_tokenizer(
    directory: Path | str,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    *,
    max_batch_frames: int | None = None,
    rows_per_call: int | None = None,
) -> GLM4VoiceTokenizer:
    """Load a checkpoint folder (config.json, model.safetensors, preprocessor_config.json).

    `device`: None/"auto" picks CUDA when available, else CPU. `dtype`: float32
    by default; "bfloat16"/"float16" on CUDA only (elsewhere float32, with a
    warning). `max_batch_frames`: padded log-mel frames (100 per second) per
    batch, by default 48,000 on CPU and 96,000 on CUDA. `rows_per_call`: rows
    per matrix-product call (default `model.ROWS_PER_CALL` for the device);
    codes are batch-invariant for any fixed value; 0 runs each product in one
    call (faster, not batch-invariant). Raises `CheckpointError` (a
    ValueError) for a folder that does not load, `ConfigError` (a ValueError)
    for a bad config. Logs a warning when the checkpoint is voxlake's
    random-weight demo.
    """
    directory = Path(directory)
    _require_files(directory)
    config = GLM4VoiceTokenizerConfig.from_json_file(directory / CONFIG_FILE)
    config.check_tokenizer()
    extractor = load_feature_extractor(directory / PREPROCESSOR_FILE, config)
    resolved_device = resolve_device(device)
    resolved_dtype = resolve_dtype(dtype, resolved_device)
    sha256 = tokenizer_checkpoint_sha256(directory)
    model = load_encoder(directory, config, device=resolved_device, dtype=resolved_dtype,
                         rows_per_call=rows_per_call)
    if config.is_demo:
        log.warning(
            "tokenizer checkpoint %s is voxlake's demo (config.json voxlake_demo: %r): its "
            "weights are random and its codes carry no meaning", directory,
            config.extra["voxlake_demo"],
        )
    return GLM4VoiceTokenizer(model, extractor, directory=directory, checkpoint_sha256=sha256,
                              max_batch_frames=max_batch_frames)
