"""Prometheus metrics for the hosted stations, on a registry of the app's own.

Counters and the latency histogram are updated as parts are decided; gauges that
describe the moment (queue depth, parts/s, NG rate over the last parts, active alarms)
are read from the stations when Prometheus scrapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from huoyan.core.station import StationStatus

LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


@dataclass(frozen=True)
class Snapshot:
    """A station's state at scrape time."""

    station: str
    queue_depth: int
    parts_per_second: float
    ng_rate: float
    active_alarms: int
    running: bool


def snapshot(status: StationStatus) -> Snapshot:
    return Snapshot(
        status.station_id,
        status.queue_depth,
        status.parts_per_second,
        status.ng_rate,
        len(status.alarms),
        status.running,
    )


class _StationGauges(Collector):
    def __init__(self, snapshots: Callable[[], Iterable[Snapshot]]) -> None:
        self.snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        families = {
            "queue_depth": GaugeMetricFamily("huoyan_queue_depth", "parts waiting for inspection", labels=["station"]),
            "parts_per_second": GaugeMetricFamily(
                "huoyan_parts_per_second", "parts stored per second over the last 5 s", labels=["station"]
            ),
            "ng_rate": GaugeMetricFamily("huoyan_ng_rate", "share of NG among the last 100 parts", labels=["station"]),
            "active_alarms": GaugeMetricFamily("huoyan_active_alarms", "alarms not yet cleared", labels=["station"]),
            "running": GaugeMetricFamily("huoyan_station_up", "1 while the station runs", labels=["station"]),
        }
        for snap in self.snapshots():
            for name, family in families.items():
                family.add_metric([snap.station], float(getattr(snap, name)))
        yield from families.values()


class Metrics:
    def __init__(self, snapshots: Callable[[], Iterable[Snapshot]]) -> None:
        self.registry = CollectorRegistry()
        self.parts = Counter(
            "huoyan_parts", "parts inspected, by verdict", ["station", "verdict"], registry=self.registry
        )
        self.latency = Histogram(
            "huoyan_inspection_latency_seconds",
            "arrival to decision",
            ["station"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.alarms = Counter("huoyan_alarms", "alarms raised, by kind", ["station", "kind"], registry=self.registry)
        self.registry.register(_StationGauges(snapshots))

    def part(self, station: str, verdict: str, latency_ms: float) -> None:
        self.parts.labels(station, verdict).inc()
        self.latency.labels(station).observe(latency_ms / 1000)

    def alarm(self, station: str, kind: str) -> None:
        self.alarms.labels(station, kind).inc()
