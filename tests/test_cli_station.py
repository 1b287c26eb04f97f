"""`huoyan run`, `records`, `db upgrade` and `feed` as a user types them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from huoyan.cli import main
from huoyan.store.database import head_revision, make_engine, upgrade


def test_feed_run_and_records(
    line_dir: Path, model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inbox = tmp_path / "inbox"
    assert main(["feed", str(line_dir / "test" / "hole"), str(inbox), "--rate", "100"]) == 0
    assert main(["feed", str(line_dir / "test" / "good"), str(inbox), "--rate", "100"]) == 0
    fed = sorted(p.name for p in inbox.iterdir() if p.is_file())
    assert len(fed) == 2 + 6 and not any(n.startswith(".") for n in fed)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"station: cli-1\nproduct: washer\nrecipe: r\nversion: '2'\nmodel: {model_file}\n"
        f"source: {{type: hot_folder, path: {inbox}, settle_ms: 0}}\n"
        "part_id: {from: counter, prefix: W}\n"
    )
    capsys.readouterr()
    assert main(["run", str(recipe), "--idle-exit", "1", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["parts"] == 8 and summary["spooled"] == 0

    assert main(["records", "--recipe", str(recipe), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 8 and {r["part_id"] for r in rows} == {f"W{i:08d}" for i in range(1, 9)}
    assert all(r["recipe_version"] == "2" and len(r["model_sha256"]) == 64 for r in rows)
    assert main(["records", "--recipe", str(recipe), "--json", "--verdict", "NG"]) == 0
    ng = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all(r["verdict"] == "NG" for r in ng) and len(ng) == sum(r["verdict"] == "NG" for r in rows)
    assert main(["records", "--recipe", str(recipe), "--station", "cli-1", "--since", "1h"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 8
    assert main(["records", "--recipe", str(recipe), "--since", "2999-01-01T00:00"]) == 0
    assert capsys.readouterr().out == ""
    # The newest first, as an operator asking for the last few parts means (#18).
    assert main(["records", "--recipe", str(recipe), "--json", "--limit", "3"]) == 0
    last = [json.loads(line)["part_id"] for line in capsys.readouterr().out.splitlines()]
    assert last == ["W00000008", "W00000007", "W00000006"]


def test_db_upgrade_and_empty_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(SystemExit, match="no Huoyan records"):
        main(["records", "--db", url])
    upgrade(make_engine(url), "0003")  # a database of the previous release
    with pytest.raises(SystemExit, match=r"earlier release .*huoyan db upgrade"):
        main(["records", "--db", url])
    assert main(["db", "upgrade", "--db", url]) == 0
    assert f"database at revision {head_revision()}" in capsys.readouterr().out
    assert main(["records", "--db", url, "--json"]) == 0
    with pytest.raises(SystemExit, match="unsupported database"):
        main(["db", "upgrade", "--db", "mysql://u@h/db"])
    with pytest.raises(SystemExit, match="--since"):
        main(["records", "--db", url, "--since", "yesterday"])


def test_run_refuses_bad_recipes_and_models(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "station: s\nproduct: p\nrecipe: r\nversion: '1'\nmodel: m.safetensors\nsource: {type: hot_folder}\n"
    )
    with pytest.raises(SystemExit, match=r"source\.hot_folder\.path"):
        main(["run", str(recipe)])
    recipe.write_text(recipe.read_text().replace("{type: hot_folder}", f"{{type: hot_folder, path: {tmp_path}}}"))
    with pytest.raises(SystemExit, match=r"error:.*m\.safetensors"):
        main(["run", str(recipe)])
