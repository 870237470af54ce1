"""Run the chaos soak of tests/test_chaos.py for as long as you like, and report what it did.

Four servers of the demo project (two gunicorn gevent, two daphne) on a fresh
PostgreSQL database with the ``postgres`` backend, reached through a TCP proxy
this run owns; publisher processes whose transactions commit at once, commit
late or roll back; SSE and WebSocket subscribers that reconnect with their
last id to a random live server whenever their connection drops; and random
faults: PostgreSQL refused or black-holed for up to 3 s, servers killed
(SIGKILL to the process group) or stopped (SIGTERM) and replaced.  Then every
subscriber must hold every committed event of its channels once, in order.
See tests/support/chaos.py.

    python -m bench.chaos --seconds 900 --seed 7
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from bench import options
from tests.support.chaos import run_soak

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = options.parser("bench.chaos", __doc__)
    parser.add_argument("--seconds", type=float, default=900.0, help="seconds of faults (default: 900)")
    parser.add_argument("--seed", type=int, help="seed of the run's choices (default: a random one, printed)")
    parser.add_argument("--sse", type=int, default=150, help="SSE subscribers (default: 150)")
    parser.add_argument("--ws", type=int, default=50, help="WebSocket subscribers (default: 50)")
    parser.add_argument("--lanes", type=int, default=2, help="publisher processes at once (default: 2)")
    parser.add_argument("--interval", default="2,6", help="seconds between two faults, at least,at most (default: 2,6)")
    options.add(parser, "out")
    return parser.parse_args(argv)


def markdown(result, args: argparse.Namespace) -> str:
    rows = "\n".join(f"| {key} | {value} |" for key, value in result.figures.items())
    verdict = "every subscriber verified" if not result.problems else f"{len(result.problems)} problems"
    return (
        f"# Chaos soak, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n"
        f"`python -m bench.chaos --seconds {args.seconds:g} --seed {result.seed} --sse {args.sse} --ws {args.ws} "
        f"--lanes {args.lanes} --interval {args.interval}`: {verdict}\n\n| figure | value |\n|---|---|\n{rows}\n"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 1_000_000)
    low, high = (float(part) for part in args.interval.split(","))
    stamp = time.strftime("%Y%m%d-%H%M%S") + "-chaos"
    logdir = args.out / f"{stamp}-logs"
    logdir.mkdir(parents=True)
    print(f"chaos: seed {seed} (replay with --seed {seed}); logs in {logdir}", flush=True)
    result = run_soak(
        logdir,
        seconds=args.seconds,
        seed=seed,
        sse=args.sse,
        ws=args.ws,
        lanes=args.lanes,
        interval=(low, high),
        say=lambda line: print(line, flush=True),
    )
    (logdir / "details.txt").write_text(result.details + "\n\nproblems:\n" + "\n".join(result.problems) + "\n")
    payload = {"figures": result.figures, "problems": result.problems[:500]}
    (args.out / f"{stamp}.json").write_text(json.dumps(payload, indent=2))
    text = markdown(result, args)
    (args.out / f"{stamp}.md").write_text(text)
    print("\n" + text)
    if result.problems:
        print(result.details[-20000:])
        print("\n".join(result.problems[:60]))
        print(f"FAILED: replay with --seed {seed}")
    print(f"results written to {args.out / stamp}.{{json,md}}, logs and fault timeline in {logdir}")
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
