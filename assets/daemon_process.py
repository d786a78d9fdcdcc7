"""The Dagster daemon `voxlake run` starts: `dagster-daemon run`, begun beside the code server.

`python -m assets.daemon_process --code-server-port PORT -- <dagster-daemon run options>`
imports the daemon first (what takes its time), then waits until the code server on
PORT answers, then runs `dagster-daemon run` with the options, in this process. So
the daemon's start-up overlaps the code server's instead of following it, and it
never loads a workspace whose only location is still starting (it would retry that
location only on its next workspace refresh, a minute later).

It exits with status 1, saying why, when the code server does not answer within
`--wait-timeout-s` (default `WAIT_TIMEOUT_S`); `voxlake run` stops it earlier, when
the code server exits.
"""

from __future__ import annotations

import argparse
import sys

WAIT_TIMEOUT_S = 120.0


def main(argv: list[str]) -> int:
    """Import the daemon, wait for the code server, run the daemon; its exit status."""
    parser = argparse.ArgumentParser(prog="python -m assets.daemon_process")
    parser.add_argument("--code-server-port", type=int, required=True)
    parser.add_argument("--wait-timeout-s", type=float, default=WAIT_TIMEOUT_S)
    parser.add_argument("daemon_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    daemon_args = args.daemon_args[1:] if args.daemon_args[:1] == ["--"] else args.daemon_args

    from dagster._daemon.cli import cli

    from assets.services import code_server_answers

    if not code_server_answers(args.code_server_port, args.wait_timeout_s):
        print(
            f"the code server on port {args.code_server_port} did not answer within "
            f"{args.wait_timeout_s:g} s; the daemon did not start",
            file=sys.stderr,
        )
        return 1
    cli(["run", *daemon_args], obj={})  # exits with the daemon's status, as `dagster-daemon` does
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
