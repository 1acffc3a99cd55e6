"""``python -m os2d`` runs the ``os2d`` console script."""
from os2d.cli.main import main

main()
