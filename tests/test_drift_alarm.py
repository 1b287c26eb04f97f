"""The station's score-drift alarm: raised when OK scores leave the model's reference, cleared when they return."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from huoyan.core.calibration import calibrate
from huoyan.core.models import Verdict
from huoyan.core.records import InspectionRecord, Severity, StationEvent
from huoyan.station.drift import KIND, DriftWatch

NOW = datetime(2026, 12, 2, tzinfo=UTC)


def record(
    score: float, sha: str = "a" * 64, threshold: float = 10.0, verdict: Verdict = Verdict.OK
) -> InspectionRecord:
    return InspectionRecord(
        key=f"k{score}",
        station_id="st-1",
        recipe_id="r",
        recipe_version="1",
        model_sha256=sha,
        threshold=threshold,
        source_name="p.png",
        verdict=verdict,
        score=score,
        arrived_at=NOW,
        decided_at=NOW,
        latency_ms=1.0,
    )


def card_of(scores: np.ndarray) -> dict[str, Any]:
    return {"calibration": calibrate(scores, 0.005).model_dump(mode="json")}


def test_ok_scores_drifting_from_the_calibration_raise_then_clear_the_alarm() -> None:
    rng = np.random.default_rng(0)
    card = card_of(rng.gamma(2.0, 1.0, 1000))
    assert len(card["calibration"]["score_quantiles"]) == 101
    events: list[StationEvent] = []
    watch = DriftWatch("st-1", events.append, lambda sha: card if sha == "a" * 64 else None)
    for s in rng.gamma(2.0, 1.0, 1500):
        watch(record(float(s)))
    assert events == []  # the same line: quiet
    for s in rng.gamma(2.0, 1.0, 200) + 1.4:  # one SD higher: brighter light, a dirtier lens
        watch(record(float(s)))
    assert [(e.kind, e.severity, e.active) for e in events] == [(KIND, Severity.ALARM, True)]
    assert "drifted higher" in events[0].message
    for s in rng.gamma(2.0, 1.0, 400):
        watch(record(float(s)))
    assert [(e.kind, e.active) for e in events] == [(KIND, True), (KIND, False)]
    # NG and ERROR parts are not OK scores: they change nothing
    watch(record(50.0, verdict=Verdict.NG))
    assert len(events) == 2


def test_a_model_without_quantiles_is_compared_with_its_first_ok_scores() -> None:
    rng = np.random.default_rng(1)
    events: list[StationEvent] = []
    watch = DriftWatch("st-1", events.append, baseline=1000)
    for s in rng.lognormal(0.0, 0.5, 2500):
        watch(record(float(s)))
    assert events == []
    for s in rng.lognormal(0.0, 0.5, 200) * 0.5:
        watch(record(float(s)))
    assert events and events[0].active and "drifted lower" in events[0].message
    # a new model starts a new comparison, and clears the old one's alarm
    watch(record(1.0, sha="b" * 64))
    assert events[-1].active is False and "watched anew" in events[-1].message


def test_a_station_watches_its_models_scores(model_file: Path, tmp_path: Path) -> None:
    from huoyan.runner.assembly import open_station
    from serverkit import write_recipe

    recipe = write_recipe(tmp_path, "cell-1", model_file, str(tmp_path / "inbox"))
    opened = open_station(recipe, f"sqlite:///{tmp_path / 'db.sqlite'}")
    watches = [listener for listener in opened.station.listeners if isinstance(listener, DriftWatch)]
    assert len(watches) == 1
    card = watches[0].card_of(opened.model_sha256)
    assert card is not None and len(card["calibration"]["score_quantiles"]) == 101
    opened.store.engine.dispose()


def test_an_hour_that_breaks_the_ng_rate_rules_raises_the_alarm(db_url: str, tmp_path: Path) -> None:
    from datetime import timedelta

    from huoyan.core.records import StoredRecord
    from huoyan.quality.charts import Limits
    from huoyan.runner.rule_watch import KIND as RULE_KIND
    from huoyan.runner.rule_watch import RuleWatch
    from huoyan.store.quality import freeze_limits
    from test_quality_records import START, parts
    from test_store import make_store

    store = make_store(db_url, tmp_path)
    records = parts(400)  # 7 minutes apart, about 12% NG
    store.write([StoredRecord(r) for r in records])
    events: list[StationEvent] = []
    watch = RuleWatch(store.engine, "st-1", events.append)
    first_hour = START.astimezone(UTC) + timedelta(hours=3)
    assert watch.check(first_hour) is None  # no frozen limits: nothing to test against
    freeze_limits(store.engine, "st-1", "ng-rate", Limits("p", {"p_bar": 0.12}, 40), "qe")
    assert watch.check(first_hour) is None  # an ordinary hour
    bad_hour = records[-1].arrived_at.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    burst = [
        r.model_copy(
            update={"key": f"burst-{i}", "verdict": Verdict.NG, "arrived_at": bad_hour + timedelta(minutes=2 * i)}
        )
        for i, r in enumerate(records[:20])
    ]
    store.write([StoredRecord(r) for r in burst])
    alarm = watch.check(bad_hour + timedelta(hours=1))
    assert alarm is not None and alarm.kind == RULE_KIND and alarm.active and "WE1" in alarm.message
    calm = [
        r.model_copy(
            update={
                "key": f"calm-{i}",
                "verdict": Verdict.OK,
                "arrived_at": bad_hour + timedelta(hours=1, minutes=2 * i),
            }
        )
        for i, r in enumerate(records[:20])
    ]
    store.write([StoredRecord(r) for r in calm])
    cleared = watch.check(bad_hour + timedelta(hours=2))
    assert cleared is not None and not cleared.active
    # as a listener: the first part of a new hour tests the hour before, off the station's thread
    watch(calm[0])
    watch(calm[-1].model_copy(update={"arrived_at": bad_hour + timedelta(hours=3)}))
    watch._pool.shutdown(wait=True)
    watch.close()
