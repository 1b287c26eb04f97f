"""``python -m huoyan.cli``: the ``huoyan`` command."""

import sys

from huoyan.cli import main

sys.exit(main())
