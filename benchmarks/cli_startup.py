"""Start-up time of the command line: ``predcode --version`` and ``--help`` against a bare ``python -c pass``.

Each command is a whole process timed from outside (start to exit, interpreter start-up included),
run in turn with the others (A B C A B C ...) so that drift of a loaded machine hits all three alike,
after one warm-up round that is not counted. Prints the median, min and max wall seconds of each
and the median excess over bare Python; ``--md`` writes them as a results table.

    .venv/bin/python benchmarks/cli_startup.py --runs 15 --md results/cli_startup.md

``--predcode`` picks the entry point: ``script`` (default) runs the installed console script next to
the interpreter (``.venv/bin/predcode``), ``module`` runs ``python -m predcode`` (the checkout's
code first on the path with PYTHONPATH=src).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def commands(entry: str) -> dict[str, list[str]]:
    if entry == "script":
        predcode = [str(Path(sys.executable).with_name("predcode"))]
    else:
        predcode = [sys.executable, "-m", "predcode"]
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "predcode --version": [*predcode, "--version"],
        "predcode --help": [*predcode, "--help"],
    }


def run_once(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited with {proc.returncode}: {proc.stderr.decode()[-2000:]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="counted runs of each command (default 15)")
    parser.add_argument("--predcode", choices=("script", "module"), default="script")
    parser.add_argument("--md", type=Path, help="write the table here")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs: expected an integer >= 1, got {args.runs}")
    cmds = commands(args.predcode)
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for round_ in range(args.runs + 1):
        for name, cmd in cmds.items():
            seconds = run_once(cmd)
            if round_:  # round 0 warms the file cache
                times[name].append(seconds)
    base = statistics.median(times["python -c pass"])
    rows = []
    for name, ts in times.items():
        med = statistics.median(ts)
        rows.append(f"| `{name}` | {med:.3f} | {min(ts):.3f} | {max(ts):.3f} | {med - base:+.3f} |")
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"], capture_output=True, text=True
    )
    entry = "the console script" if args.predcode == "script" else "python -m predcode"
    lines = [
        f"Command: `{' '.join(['python', 'benchmarks/cli_startup.py', *(argv or sys.argv[1:])])}` "
        f"(predcode run as {entry}: `{' '.join(cmds['predcode --version'][:-1])}`)",
        f"Commit: {commit}{' (with uncommitted changes in src/)' if dirty.stdout.strip() else ''}; "
        f"date: {_dt.datetime.now(_dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}; {args.runs} runs of each, interleaved, after one warm-up round",
        "",
        "| command | median s | min s | max s | median minus bare Python |",
        "| --- | ---: | ---: | ---: | ---: |",
        *rows,
    ]
    text = "\n".join(lines)
    print(text)
    if args.md:
        args.md.write_text(
            "# Command-line start-up\n\nWall seconds of the whole process (start to exit), "
            "`benchmarks/cli_startup.py`. Target: `--version` and `--help` within 0.5 s of bare Python.\n\n"
            + text
            + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
