"""``python -m backbone.broker``: the broker's command line (see ``backbone.broker.cli``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
