"""``python -m predcode`` and the ``predcode`` command: the command line.

``main`` imports the command line itself, so a Ctrl-C while it loads (under a second on a quiet
machine) also exits 130 with one line, not a traceback.
"""

import sys


def main() -> None:
    """Run the ``predcode`` command line."""
    try:
        from predcode.cli import app
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
    app(prog_name="predcode")


if __name__ == "__main__":
    main()
