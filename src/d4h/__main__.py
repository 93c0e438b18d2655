"""`python -m d4h` runs the CLI (the supervisor starts nodes this way)."""

from d4h.cli.main import run

run()
