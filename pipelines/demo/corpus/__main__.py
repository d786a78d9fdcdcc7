"""Command line: `python -m pipelines.fixtures OUT_DIR` writes the test corpora into OUT_DIR."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pipelines.demo.corpus import EspeakMissingError, make_fixtures, summary_lines


def main(argv: list[str] | None = None) -> int:
    """Generate the corpora, print progress and a per-corpus summary; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.fixtures",
        description="Generate voxlake's synthetic test corpora and their expected manifests.",
    )
    parser.add_argument("out_dir", type=Path, help="folder to write (generated parts replaced)")
    args = parser.parse_args(argv)

    started = time.monotonic()
    try:
        make_fixtures(args.out_dir, progress=lambda line: print(f"  {line}", flush=True))
    except EspeakMissingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    files = [path for path in args.out_dir.rglob("*") if path.is_file() and not path.is_symlink()]
    size_mb = sum(path.stat().st_size for path in files) / 1e6
    print(f"wrote {len(files)} files ({size_mb:.2f} MB) to {args.out_dir} "
          f"in {time.monotonic() - started:.1f} s")
    for line in summary_lines(args.out_dir):
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
