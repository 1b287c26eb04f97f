"""``huoyan spc``: charts of a CSV's columns and of a station's records, as a script uses them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from huoyan.cli import main
from huoyan.core.plant import ShiftCalendar
from huoyan.core.records import StoredRecord
from huoyan.store import quality as Q
from test_quality_charts import ORANGE_JUICE, PISTON_RINGS
from test_quality_records import parts
from test_store import make_store


@pytest.fixture()
def juice(tmp_path: Path) -> Path:
    path = tmp_path / "juice.csv"
    path.write_text("sample,defective,n\n" + "".join(f"{i + 1},{d},50\n" for i, d in enumerate(ORANGE_JUICE)))
    return path


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:  # type: ignore[type-arg]
    assert main(["spc", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_p_chart_of_a_csv_prints_limits_points_and_violations(
    juice: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["spc", "p", str(juice), "--value", "defective", "--size", "n", "--rules", "WE1"]) == 0
    out = capsys.readouterr().out
    assert "centre 0.231333  LCL 0.0524" in out and "UCL 0.410" in out
    assert "p point 15 (15): WE1" in out and "p point 23 (23): WE1" in out
    doc = run_json(capsys, "p", str(juice), "--value", "defective", "--size", "50", "--rules", "WE1")
    assert [v["point"] for v in doc["violations"]] == [15, 23]
    assert len(doc["charts"][0]["statistic"]) == 30 and doc["charts"][0]["statistic"][14] == pytest.approx(0.44)


def test_phase_one_exclusion_then_frozen_limits_for_phase_two(
    juice: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    limits = tmp_path / "limits.json"
    argv = ["p", str(juice), "--value", "defective", "--size", "n"]
    revised = run_json(capsys, *argv, "--exclude", "15,23", "--freeze", str(limits), "--who", "qe-li")
    assert revised["charts"][0]["excluded"] == [15, 23]
    assert revised["charts"][0]["center"][0] == pytest.approx(0.215, abs=5e-5)
    stored = json.loads(limits.read_text())["limits"]
    assert stored["version"] == 1 and stored["frozen_by"] == "qe-li"
    # Phase II on new data: the frozen centre and limits, whatever the new points are
    new = tmp_path / "new.csv"
    new.write_text("defective,n\n30,50\n10,50\n")
    phase2 = run_json(capsys, "p", str(new), "--value", "defective", "--size", "n", "--limits", str(limits))
    assert phase2["charts"][0]["center"][0] == pytest.approx(0.215, abs=5e-5)
    assert phase2["charts"][0]["limits"]["version"] == 1
    assert [v["point"] for v in phase2["violations"]] == [1]
    # freezing again writes the next version
    run_json(capsys, *argv, "--exclude", "15,23", "--freeze", str(limits))
    assert json.loads(limits.read_text())["limits"]["version"] == 2


def test_subgroups_from_a_size_or_a_column_and_capability(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rings = tmp_path / "rings.csv"
    rows = [(i + 1, v) for i, group in enumerate(PISTON_RINGS) for v in group]
    rings.write_text("sample,diameter\n" + "".join(f"{s},{v}\n" for s, v in rows))
    by_size = run_json(capsys, "xbar-r", str(rings), "--value", "diameter", "--subgroup", "5")
    by_column = run_json(capsys, "xbar-r", str(rings), "--value", "diameter", "--subgroup", "sample")
    assert by_size["charts"][0]["ucl"] == by_column["charts"][0]["ucl"]
    assert abs(by_size["charts"][0]["ucl"][0] - 74.014) < 1e-3
    cap = run_json(
        capsys, "xbar-s", str(rings), "--value", "diameter", "--subgroup", "5", "--lsl", "73.95", "--usl", "74.05"
    )
    assert cap["capability"]["cp"]["value"] == pytest.approx(0.1 / (6 * cap["charts"][0]["limits"]["params"]["sigma"]))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["p", "{csv}"], "several columns (sample, defective, n); name one with --value"),
        (["c", "{csv}", "--value", "weight"], "--value 'weight': no such column"),
        (["np", "{csv}", "--value", "defective"], "needs the sample size of each point"),
        (["imr", "{csv}", "--value", "defective", "--exclude", "99"], "point 98 does not exist"),
        (["p", "{csv}", "--value", "defective", "--size", "n", "--rules", "WE7"], "unknown rule 'WE7'"),
        (["xbar-r", "{csv}", "--value", "defective"], "needs subgroups of at least 2 values"),
        (["p", "{missing}"], "is not a file"),
    ],
)
def test_bad_input_is_named_in_the_error(
    juice: Path, tmp_path: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [a.format(csv=juice, missing=tmp_path / "none.csv") for a in argv]
    with pytest.raises(SystemExit) as exc:
        main(["spc", *argv])
    assert message in str(exc.value)


def test_records_charted_by_shift_from_the_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'records.db'}"
    store = make_store(url, tmp_path)
    records = parts(300)
    shift = timedelta(days=(datetime.now(UTC) - records[-1].arrived_at).days)  # into the last day
    records = [r.model_copy(update={"arrived_at": r.arrived_at + shift}) for r in records]
    store.write([StoredRecord(r) for r in records])
    Q.set_shift_calendar(store.engine, ShiftCalendar(timezone="Asia/Shanghai"), "admin")
    base = ["records", "--db", url, "--station", "st-1", "--since", "3d"]
    doc = run_json(capsys, *base, "--chart", "p", "--by", "shift")
    judged = [r for r in records if r.verdict != "ERROR"]
    calendar = ShiftCalendar(timezone="Asia/Shanghai")
    assert doc["labels"] == sorted({calendar.label(r.arrived_at) for r in judged})
    assert doc["charts"][0]["center"][0] == pytest.approx(sum(r.verdict == "NG" for r in judged) / len(judged))
    assert all(label.endswith((" A", " B", " C")) for label in doc["labels"])
    # freeze, then the next chart uses the frozen version
    run_json(capsys, *base, "--chart", "p", "--by", "lot", "--freeze", "--who", "qe-wang")
    lots = run_json(capsys, *base, "--chart", "p", "--by", "lot")
    assert lots["charts"][0]["limits"]["version"] == 1 and lots["charts"][0]["limits"]["frozen_by"] == "qe-wang"
    assert lots["labels"][0] == "L00"
    scores = run_json(capsys, *base, "--chart", "xbar-s", "--metric", "score", "--by", "hour")
    assert scores["charts"][1]["chart"] == "s"
    each = run_json(capsys, *base, "--chart", "imr", "--metric", "normalised-score", "--by", "part", "--limit", "40")
    assert len(each["labels"]) == 40
    with pytest.raises(SystemExit, match="score is charted on a variables chart, not on a p chart"):
        main(["spc", *base, "--chart", "p", "--metric", "score"])
