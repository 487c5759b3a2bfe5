"""``python -m predcode`` runs the command line."""

from predcode.cli import app

app(prog_name="predcode")
