"""Stage recipes: one YAML per VITA-Audio stage, upstream defaults plus named profiles.

Each `<stage>.yaml` starts with the command that launches it (a comment), then the
upstream hyperparameters, then `profiles:` whose entries override them (`upstream` is
empty; `tiny` trains a small model on a CPU in seconds). `load_stage_config` resolves a
file and a profile into a validated `StageConfig`.

>>> config = load_stage_config(recipe_path("sft"), "upstream")
>>> (config.max_steps, config.lr, config.weight_decay, config.mctp_lr_multiplier, config.seq_len)
(4000, 5e-05, 0.1, 10.0, 2048)
>>> load_stage_config(recipe_path("mtp10"), "tiny").mctp_modules
10
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from schemas.training import STAGE_ORDER, StageConfig

RECIPES_DIR = Path(__file__).resolve().parent


class RecipeError(ValueError):
    """A stage YAML that cannot be read or does not validate; the message names the file."""


def recipe_path(stage: str, recipes_dir: Path | None = None) -> Path:
    """The YAML of `stage` in `recipes_dir` (the packaged recipes by default)."""
    if stage not in STAGE_ORDER:
        raise RecipeError(f"unknown stage {stage!r}; stages are {', '.join(STAGE_ORDER)}")
    return (recipes_dir or RECIPES_DIR) / f"{stage}.yaml"


def launch_command(path: Path) -> str:
    """The launch command on the YAML's first line (without the leading `# `)."""
    first = path.read_text(encoding="utf-8").splitlines()[0]
    if not first.startswith("# "):
        raise RecipeError(f"{path}: the first line must be the launch command as a comment")
    return first[2:].strip()


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` on top of `base`; nested mappings merge, lists and scalars replace."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_stage_config(path: Path, profile: str = "upstream") -> StageConfig:
    """Read a stage YAML and resolve `profile` over its defaults.

    Raises RecipeError naming the file for unreadable YAML, an unknown profile, or a
    value that does not validate (with the field's name).
    """
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise RecipeError(f"{path}: cannot read the stage recipe: {error}") from error
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a stage recipe is a mapping of settings")
    profiles = raw.pop("profiles", None) or {}
    if profile not in profiles and profile != "upstream":
        known = ", ".join(sorted({"upstream", *profiles})) or "upstream"
        raise RecipeError(f"{path}: no profile {profile!r} (known: {known})")
    resolved = _merge(raw, profiles.get(profile) or {})
    try:
        return StageConfig.model_validate(resolved)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise RecipeError(f"{path} (profile {profile!r}): {problems}") from error
