"""Running stations: ``assembly`` builds one from a recipe (``open_station``) and runs it in
the foreground (``run_station``); ``line`` is the live controller the line and the server
talk to; ``recipes`` says what the record store registers. The CLI, the server, the demo
and the benchmarks all start stations through here, so they run the same code."""

from huoyan.runner.assembly import OpenStation, open_database, open_station, print_status, run_station
from huoyan.runner.line import StationLine
from huoyan.runner.recipes import with_threshold

__all__ = [
    "OpenStation",
    "StationLine",
    "open_database",
    "open_station",
    "print_status",
    "run_station",
    "with_threshold",
]
