"""A chart as a user sees it: the series, the rule violations and the capability, together.

The CLI prints it, the API returns it and the quality page draws it; all three build it
here, so a chart means the same wherever it is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from huoyan.quality.capability import Capability
from huoyan.quality.charts import Chart, Limits
from huoyan.quality.rules import Violation, check, parse_rules
from huoyan.quality.series import Options, Series, build, capability_for


@dataclass(frozen=True)
class Report:
    kind: str
    title: str
    labels: list[str]
    charts: list[Chart]
    violations: list[tuple[Chart, Violation]]
    capability: Capability | None

    @property
    def limits(self) -> Limits:
        return self.charts[0].limits

    def as_dict(self, points_from: int = 0) -> dict[str, Any]:
        """Plain JSON; point indices count from ``points_from`` (the CLI's from 1)."""
        charts = []
        for chart in self.charts:
            body = chart.as_dict()
            body["excluded"] = [i + points_from for i in body["excluded"]]
            charts.append(body)
        return {
            "kind": self.kind,
            "title": self.title,
            "labels": self.labels,
            "charts": charts,
            "violations": [
                {
                    "chart": c.name,
                    "rule": v.rule,
                    "point": v.index + points_from,
                    "label": self.labels[v.index],
                    "text": v.text,
                }
                for c, v in self.violations
            ],
            "capability": self.capability.as_dict() if self.capability is not None else None,
        }


def report(
    kind: str,
    series: Series,
    title: str,
    options: Options | None = None,
    rules: str | Sequence[str] = "western-electric",
    lsl: float | None = None,
    usl: float | None = None,
) -> Report:
    """Chart ``series``, test the rules, and add capability when a specification is given."""
    ids = parse_rules(rules)
    charts = build(kind, series, options or Options())
    cap = capability_for(series, charts[0].limits, lsl, usl) if lsl is not None or usl is not None else None
    violations = [(chart, v) for chart in charts for v in check(chart, ids)]
    return Report(kind, title, series.labels, charts, violations, cap)
