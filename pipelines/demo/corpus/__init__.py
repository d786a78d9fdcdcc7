"""Test corpora generator: small look-alikes of every corpus voxlake ingests.

`make_fixtures(out_dir)` writes LibriSpeech, WenetSpeech, Emilia and custom
(folder, table, VITA JSONL, Hugging Face) corpora in their real on-disk
formats, filled with espeak-ng speech and seeded with the defects ingest must
reject, plus `expected/<name>.jsonl`: what a connector must report for each
input utterance. Output is deterministic: the same code gives the same bytes.

    python -m pipelines.fixtures tests/data/corpora
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from pipelines.demo.corpus.custom import write_custom
from pipelines.demo.corpus.emilia import write_emilia
from pipelines.demo.corpus.expected import (
    EXPECTED_NAMES,
    ExpectedUtterance,
    read_expected,
    summarize,
    write_expected,
)
from pipelines.demo.corpus.huggingface import write_hf_disk, write_hf_parquet
from pipelines.demo.corpus.librispeech import write_librispeech
from pipelines.demo.corpus.speech import EspeakMissingError, espeak_available
from pipelines.demo.corpus.wenetspeech import write_wenetspeech

__all__ = [
    "EXPECTED_NAMES",
    "EspeakMissingError",
    "espeak_available",
    "make_fixtures",
    "summary_lines",
]

# Everything make_fixtures owns under out_dir; it replaces these and touches nothing else.
GENERATED_ENTRIES = ("librispeech", "wenetspeech", "emilia", "custom", "expected", "README.md")

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def make_fixtures(out_dir: Path, progress: Progress | None = None) -> None:
    """Generate every test corpus and its expected manifest under `out_dir`.

    Existing generated folders under `out_dir` are replaced, so a re-run never
    leaves stale files behind. `progress` receives one line per step.
    Raises `EspeakMissingError` when espeak-ng is not installed.
    """
    report = progress or _quiet
    if not espeak_available():
        raise EspeakMissingError(
            "espeak-ng is required to generate the test corpora (apt-get install espeak-ng)"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in GENERATED_ENTRIES:
        target = out_dir / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()

    expected: dict[str, list[ExpectedUtterance]] = {}
    report("librispeech: LibriSpeech/{dev-clean-2,train-clean-5} (FLAC 16 kHz)")
    expected["librispeech"] = write_librispeech(out_dir)
    report("wenetspeech: WenetSpeech.json + Opus recordings")
    expected["wenetspeech"] = write_wenetspeech(out_dir)
    report("emilia: Emilia/{EN,ZH} and Emilia-YODAS/EN WebDataset tars (MP3 24 kHz)")
    expected["emilia"] = write_emilia(out_dir)
    report("custom: folder tree, CSV/JSONL table, VITA-Audio JSONL")
    expected.update(write_custom(out_dir))
    report("custom: Hugging Face save_to_disk dataset and hub-style parquet")
    expected["custom_hf_disk"] = write_hf_disk(out_dir / "custom" / "hf_disk")
    expected["custom_hf_parquet"] = write_hf_parquet(out_dir / "custom" / "hf_parquet")

    if sorted(expected) != sorted(EXPECTED_NAMES):
        raise RuntimeError(f"generated expectations {sorted(expected)} != {EXPECTED_NAMES}")
    for name in EXPECTED_NAMES:
        write_expected(out_dir, name, expected[name])
    (out_dir / "README.md").write_text(_readme(out_dir), encoding="utf-8")
    report(f"expected: {len(EXPECTED_NAMES)} files in {out_dir / 'expected'}")


def summary_lines(out_dir: Path) -> list[str]:
    """One line per expected file: '<name>: N ok, M rejected (reason: k, ...)'."""
    lines = []
    for name in EXPECTED_NAMES:
        rows = read_expected(Path(out_dir) / "expected" / f"{name}.jsonl")
        lines.append(f"{name}: {summarize(rows)}")
    return lines


def _readme(out_dir: Path) -> str:
    counts = "\n".join(f"- {line}" for line in summary_lines(out_dir))
    return f"""\
# voxlake test corpora (generated)

Written by `python -m pipelines.fixtures <dir>` (`pipelines/fixtures/`); do not
edit by hand, regenerate. Every recording is espeak-ng speech; ids, names,
texts and URLs are invented. Each corpus is in its real on-disk format and
carries deliberate defects that ingest must reject with a reason; some
corpora also hold utterances that ingest accepts but the quality policy must
reject (`custom/folder/quality/`: noise, clipping, too short, mostly silence,
a transcript far too long for its audio; NaN samples; a low declared DNSMOS
or label confidence).

| folder | corpus | format |
| --- | --- | --- |
| `librispeech/LibriSpeech/` | LibriSpeech (mini) | FLAC 16 kHz, `*.trans.txt`, `*.TXT` metadata |
| `wenetspeech/` | WenetSpeech | `WenetSpeech.json`, Ogg Opus 16 kHz long recordings |
| `emilia/` | Emilia, Emilia-YODAS | WebDataset tars of MP3 24 kHz + JSON |
| `custom/folder/` | audio folder | wav/flac/mp3/ogg/opus + `.txt`/`.lab` |
| `custom/table/` | CSV/JSONL manifest | `manifest.csv`, `manifest.jsonl`, `audio/` |
| `custom/vita/` | VITA-Audio JSONL | `data.jsonl`, `audio/` |
| `custom/hf_disk/` | Hugging Face `save_to_disk` | Arrow shards, embedded audio bytes |
| `custom/hf_parquet/` | Hugging Face parquet | LibriSpeech-on-the-hub columns |

`expected/<name>.jsonl` holds one line per input utterance, sorted by
`native_id`: status, reject reason, text, speaker, language, split, subsets,
audio path/member, offset, duration and sample rate a connector must report,
and `later_reason`, the quality-policy rule that must reject an ok row under
the demo policy (policy defaults, Emilia `min_dnsmos` 3.0, WenetSpeech
`min_confidence` 0.9; null: accepted). Conventions in
`pipelines/fixtures/expected.py`.

## Input utterances per expected file

{counts}
"""
