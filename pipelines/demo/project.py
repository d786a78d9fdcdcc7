"""The demo project: every bundled test corpus as a source, with embedded defaults."""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.demo.corpus.expected import DEMO_SOURCE_RULES
from pipelines.project import PROJECT_FILE, Project, init_project, load_project
from schemas import ProjectConfig, QualityPolicy, ReleaseSpec, SourceConfig
from schemas.release import DEFAULT_EVAL_SPLITS
from schemas.training import EvalSettings, TrainingConfig

# This file is pipelines/demo/project.py: the repository root is three folders up.
BUNDLED_CORPORA = Path(__file__).resolve().parents[2] / "tests" / "data" / "corpora"

# (name, kind, path under the bundled corpora, options)
DEMO_SOURCES: list[tuple[str, str, str, dict[str, object]]] = [
    ("librispeech", "librispeech", "librispeech/LibriSpeech", {}),
    ("wenetspeech", "wenetspeech", "wenetspeech", {}),
    ("emilia", "emilia", "emilia", {}),
    ("custom_folder", "audio_folder", "custom/folder", {}),
    ("custom_table", "table", "custom/table/manifest.csv", {}),
    ("custom_vita", "vita_jsonl", "custom/vita/data.jsonl", {}),
    ("custom_hf", "hf_dataset", "custom/hf_disk", {}),
    ("custom_parquet", "hf_dataset", "custom/hf_parquet", {}),
]


# The bundled corpora's expected decisions are written for exactly this policy.
DEMO_POLICY = QualityPolicy.model_validate({"sources": DEMO_SOURCE_RULES})


# Every accepted utterance, speakers split 80/10/10, exact duplicates dropped. The
# evaluation sets go to test only: WenetSpeech's test_net (a default) and, as the demo
# LibriSpeech has no test split, its dev-clean-2.
DEMO_RELEASE = ReleaseSpec(
    name="demo-v1",
    where="TRUE",
    dev=0.1,
    test=0.1,
    dedup=True,
    eval_splits=[*DEFAULT_EVAL_SPLITS, "librispeech/dev-clean-2"],
)


# The four stages with the CPU-sized `tiny` profile on the demo release (a demo BPE text
# tokenizer trained on its transcripts, a randomly initialised 2-layer Qwen2), then a
# small evaluation on the held-out split.
DEMO_TRAINING = TrainingConfig(
    release=DEMO_RELEASE.name,
    profile="tiny",
    eval=EvalSettings(split="test", max_examples=16, decode_prompts=2, max_new_tokens=48),
)


def demo_config(project_dir: Path, corpora: Path = BUNDLED_CORPORA) -> ProjectConfig:
    """A project config with one source per bundled corpus (paths relative to the project)."""
    sources = [
        SourceConfig(
            name=name,
            kind=kind,  # type: ignore[arg-type]
            path=os.path.relpath(corpora / rel, project_dir),
            options=options,
        )
        for name, kind, rel, options in DEMO_SOURCES
    ]
    # Small units so the demo shows several units per source, as a real corpus would;
    # the default policy plus the corpora's own floors (Emilia keeps DNSMOS >= 3.0).
    return ProjectConfig(
        sources=sources,
        units={"max_utterances": 8},  # type: ignore[arg-type]
        quality=DEMO_POLICY,
        shards={"max_bytes": 256 * 1024, "max_samples": 4},  # type: ignore[arg-type]
        releases=[DEMO_RELEASE],
    )


def demo_project(directory: Path) -> Project:
    """Create the demo project in `directory`, or reuse it if it is already there."""
    directory = directory.resolve()
    if (directory / PROJECT_FILE).exists():
        return load_project(directory)
    if not BUNDLED_CORPORA.is_dir():
        raise FileNotFoundError(f"bundled corpora not found at {BUNDLED_CORPORA}")
    config = demo_config(directory).model_copy(update={"training": DEMO_TRAINING})
    return init_project(directory, config)
