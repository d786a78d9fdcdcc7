"""voxlake.yaml validation: bad files are errors that name the field and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pipelines.project import ProjectError, load_project
from schemas import MANIFEST_ARROW_SCHEMA, ManifestRecord, ProjectConfig


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "voxlake.yaml").write_text(text)
    return tmp_path


def test_minimal_config_gets_defaults() -> None:
    config = ProjectConfig.model_validate(
        {"sources": [{"name": "libri", "kind": "librispeech", "path": "x"}]}
    )
    assert config.lake == "lake"
    assert config.units.max_utterances == 2000
    assert config.sources[0].options == {"splits": None}


@pytest.mark.parametrize(
    ("text", "field", "problem"),
    [
        ("sources:\n- {name: a, kind: mp4, path: x}\n", "sources.0.kind", "Input should be"),
        (
            "sources:\n- {name: a, kind: librispeech, path: x, options: {split: [a]}}\n",
            "sources.0",
            "split",
        ),
        ("sources:\n- {name: A-1, kind: emilia, path: x}\n", "sources.0.name", "lower-case"),
        ("sources:\n- {name: a, kind: emilia}\n", "sources.0.path", "Field required"),
        ("version: 2\n", "version", "unsupported"),
        ("units: {max_utterances: 0}\n", "units.max_utterances", "greater than or equal"),
        ("lakes: x\n", "lakes", "Extra inputs are not permitted"),
        (
            "sources:\n- {name: a, kind: emilia, path: x}\n- {name: a, kind: emilia, path: y}\n",
            "(top level)",
            "used twice",
        ),
    ],
)
def test_invalid_config_names_field_and_problem(
    tmp_path: Path, text: str, field: str, problem: str
) -> None:
    _write(tmp_path, text)
    with pytest.raises(ProjectError) as caught:
        load_project(tmp_path)
    message = str(caught.value)
    assert str(tmp_path / "voxlake.yaml") in message
    line = next(ln for ln in message.splitlines() if ln.strip().startswith(field))
    assert problem in line


def test_yaml_syntax_error_names_file(tmp_path: Path) -> None:
    _write(tmp_path, "sources: [\n")
    with pytest.raises(ProjectError, match="not valid YAML"):
        load_project(tmp_path)


def test_missing_project_file_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="voxlake init"):
        load_project(tmp_path)


def test_manifest_arrow_schema_follows_the_model() -> None:
    assert MANIFEST_ARROW_SCHEMA.names == list(ManifestRecord.model_fields)
    assert str(MANIFEST_ARROW_SCHEMA.field("subsets").type) == "list<item: string>"
    assert MANIFEST_ARROW_SCHEMA.field("duration_s").nullable
    assert not MANIFEST_ARROW_SCHEMA.field("utterance_id").nullable


def test_option_models_reject_wrong_types() -> None:
    with pytest.raises(ValidationError, match="require_text"):
        ProjectConfig.model_validate(
            {
                "sources": [
                    {
                        "name": "f",
                        "kind": "audio_folder",
                        "path": "x",
                        "options": {"require_text": "maybe"},
                    }
                ]
            }
        )
