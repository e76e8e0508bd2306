"""``python -m backbone``: the ``backbone`` command line."""

from backbone.cli import main

main()
