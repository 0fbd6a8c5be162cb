"""Entry point: ``python -m sweep``. See ``sweep.cli`` for the commands."""

import sys

from sweep.cli import main

if __name__ == "__main__":
    sys.exit(main())
