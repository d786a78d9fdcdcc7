"""GLM-4-Voice tokenizer commands: `tokenize` (codes of audio files), `tokenizer make-demo`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli import render
from pipelines.cli.options import ProjectOption, fail, load


def tokenizer_make_demo(
    directory: Annotated[Path, typer.Argument(help="checkpoint folder to write")],
) -> None:
    """Write a tiny random-weight checkpoint in the GLM-4-Voice layout (codes mean nothing)."""
    from inference.glm4voice import write_demo_checkpoint

    write_demo_checkpoint(directory)
    render.print_message(
        f"demo tokenizer checkpoint written to {directory.resolve()} "
        "(random weights: its codes carry no meaning)"
    )


def tokenize(
    files: Annotated[list[Path], typer.Argument(help="audio files")],
    checkpoint: Annotated[
        Path | None,
        typer.Option("--checkpoint", help="checkpoint folder (default: the project's)"),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="text | json")] = "text",
    project_dir: ProjectOption = None,
) -> None:
    """Print the GLM-4-Voice codes of audio files, as <|audio_N|> text or JSON."""
    from inference.glm4voice import load_tokenizer
    from pipelines.audio.decode import AudioDecodeError
    from pipelines.audio.prepare import prepare

    if fmt not in {"text", "json"}:
        raise fail(
            f"--format must be text or json, not {fmt!r}",
            example="voxlake tokenize some.wav --format json",
        )
    if checkpoint is None:
        from pipelines.tokenizer import ensure_checkpoint

        project = load(project_dir)
        checkpoint = ensure_checkpoint(project.directory, project.config.tokenizer)
    try:
        tokenizer = load_tokenizer(checkpoint)
    except (OSError, ValueError) as error:
        raise fail(f"cannot load tokenizer from {checkpoint}: {error}") from error
    audio = []
    for path in files:
        try:
            audio.append(prepare(path, str(path)).samples)
        except AudioDecodeError as error:
            raise fail(f"{path}: {error.message}") from error
    codes = tokenizer.tokenize(audio)
    if tokenizer.is_demo:
        render.print_warning("demo tokenizer: random weights, codes mean nothing")
    if fmt == "json":
        payload = [
            {
                "file": str(p),
                "n_codes": len(c),
                "codes": c.tolist(),
                "tokenizer_sha256": tokenizer.checkpoint_sha256,
            }
            for p, c in zip(files, codes, strict=True)
        ]
        sys.stdout.write(json.dumps(payload) + "\n")
        return
    for path, file_codes in zip(files, codes, strict=True):
        text = "".join(f"<|audio_{int(c)}|>" for c in file_codes)
        sys.stdout.write(f"{path}\t<|begin_of_audio|>{text}<|end_of_audio|>\n")
