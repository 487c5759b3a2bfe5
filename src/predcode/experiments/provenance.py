"""Where a result came from: command, commit, date, machine and library versions."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import jax

import predcode


def git_commit() -> str:
    """Short hash of the checkout predcode runs from (``+dirty`` with uncommitted changes), or ``unknown``."""
    try:
        run = lambda *a: subprocess.run(
            ["git", *a], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=5
        ).stdout.strip()
        commit = run("rev-parse", "--short", "HEAD")
        return (commit + ("+dirty" if run("status", "--porcelain", "--untracked-files=no") else "")) or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance() -> dict[str, str]:
    """Command line, commit, UTC date, machine (CPU, cores) and versions, for every result file."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "command": " ".join(["predcode" if sys.argv[0].endswith("predcode") else sys.argv[0], *sys.argv[1:]]),
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": f"{platform.node()}: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}",
        "predcode_version": predcode.__version__,
        "jax_version": jax.__version__,
        "python_version": platform.python_version(),
    }
