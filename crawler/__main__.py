"""``python -m crawler``: see :mod:`crawler.commands.cli`."""

import sys

from crawler.commands.cli import main

sys.exit(main())
