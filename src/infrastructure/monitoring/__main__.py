"""``python -m infrastructure.monitoring``: the ``monitoring`` command, every subcommand included."""

from .cli import main

main(prog_name="monitoring")
