"""Huoyan (火眼): intelligent inspection from good parts only, on an ordinary CPU."""

import os

# OpenMP's workers (torch's libgomp, which the search kernel shares) spin for up to
# 300,000 pauses after each parallel region by default, on the cores the backbone needs
# next: 30,000 keeps them warm between a part's search regions and lets them yield
# before its next backbone run (docs/benchmarks.md, "Where a part's time goes"). libgomp
# reads it once, when torch loads it, so it is set before anything imports torch; a value
# set by the user wins.
os.environ.setdefault("GOMP_SPINCOUNT", "30000")

__version__ = "0.1.0"
