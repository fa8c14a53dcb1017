"""``python -m transferkit`` runs the command line."""

from transferkit.cli import main

main()
