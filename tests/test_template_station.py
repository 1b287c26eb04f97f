"""A station that inspects boards against golden templates: records, evidence, errors, review."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from huoyan.core.recipe import RecipeError, load_recipe
from huoyan.runner import open_station, run_station
from huoyan.store.records import query_records
from huoyan.store.reviews import Outcome, ReviewError, Reviews
from huoyan.vision.imageio import decode_image
from huoyan.vision.template.detector import TemplateComparison
from pcbkit import board, pair, training_pairs


@pytest.fixture(scope="module")
def template_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("template-model")
    return TemplateComparison(n_trees=40, workers=1, seed=2).fit(training_pairs(24)).save(folder / "pcb")


def _recipe(tmp: Path, model: Path, inbox: Path, templates: str) -> Path:
    path = tmp / "recipe.yaml"
    path.write_text(
        f"station: aoi-1\nproduct: board\nrecipe: board-a\nversion: '1'\n"
        f"source: {{type: hot_folder, path: {inbox}, settle_ms: 30}}\nmodel: {model}\n"
        f"storage: {{keep_ok_every: 1}}\n{templates}\n"
    )
    return path


def test_a_template_station_records_named_defects_with_the_aligned_template(
    template_model: Path, tmp_path: Path
) -> None:
    inbox, golden = tmp_path / "inbox", tmp_path / "golden"
    inbox.mkdir()
    golden.mkdir()
    parts = {"b1": pair(600, ("short",)), "b2": pair(601), "b3": pair(602, ("copper", "open"))}
    for stem, p in parts.items():
        assert p.template is not None
        cv2.imwrite(str(inbox / f"{stem}_test.png"), p.image)
        cv2.imwrite(str(golden / f"{stem}_temp.png"), p.template)
    cv2.imwrite(str(inbox / "b4_test.png"), board(603).image)  # no template for it
    cv2.imwrite(str(inbox / "stray.png"), board(604).image)  # does not fit the naming rule
    recipe = load_recipe(_recipe(tmp_path, template_model, inbox, f"templates: {{folder: {golden}}}"))
    opened = open_station(recipe, f"sqlite:///{tmp_path / 'r.db'}")
    run_station(opened, idle_exit=1.0, status=None)
    rows = {r["source_name"]: r for r in query_records(opened.engine)}
    assert set(rows) == {"b1_test.png", "b2_test.png", "b3_test.png", "b4_test.png", "stray.png"}
    assert rows["b2_test.png"]["verdict"] == "OK" and rows["b2_test.png"]["regions"] == []
    for name, count in (("b1_test.png", 1), ("b3_test.png", 2)):
        r = rows[name]
        assert r["verdict"] == "NG" and len(r["regions"]) == count
        assert all(g["label"] in {"short", "copper", "open", "spur", "mousebite", "pin-hole"} for g in r["regions"])
        assert all(0 < g["confidence"] <= 1 for g in r["regions"])
        kinds = [e["kind"] for e in r["evidence"]]
        assert kinds == ["image", "anomaly-map", "reference"]
        reference = decode_image(opened.store.blobs.get(r["evidence"][2]["sha256"]))
        assert reference.shape[:2] == (192, 192)
    assert rows["b4_test.png"]["verdict"] == "ERROR" and "no template" in rows["b4_test.png"]["error"]
    assert (
        rows["stray.png"]["verdict"] == "ERROR" and "does not match the templates pattern" in rows["stray.png"]["error"]
    )

    # A reviewer confirms b3 and corrects its first region's type.
    reviews = Reviews(opened.engine)
    b3 = rows["b3_test.png"]["id"]
    with pytest.raises(ReviewError, match="has 2 regions; there is no region 5"):
        reviews.add(b3, Outcome.DEFECT, "qe", region_labels=[(5, "short")])
    with pytest.raises(ReviewError, match="confirmed as a defect"):
        reviews.add(b3, Outcome.FALSE_ALARM, "qe", region_labels=[(0, "short")])
    done = reviews.add(b3, Outcome.DEFECT, "qe", region_labels=[(0, "spur")])
    assert done["regions"] == [{"index": 0, "label": "spur"}]
    assert reviews.latest([b3])[b3]["regions"] == [{"index": 0, "label": "spur"}]


def test_a_template_model_without_a_templates_section_is_refused_at_start(template_model: Path, tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()
    recipe = load_recipe(_recipe(tmp_path, template_model, tmp_path / "inbox", ""))
    with pytest.raises(ValueError, match="needs a 'templates' section"):
        open_station(recipe, f"sqlite:///{tmp_path / 'r.db'}")
    bad = _recipe(tmp_path, template_model, tmp_path / "inbox", "templates: {folder: g, name: '{row}.png'}")
    with pytest.raises(RecipeError, match=r"templates: Value error, name '\{row\}.png' uses 'row'"):
        load_recipe(bad)


def test_server_training_refuses_a_template_station_with_the_way_to_train_it(
    template_model: Path, tmp_path: Path
) -> None:
    """The review queue holds good images, not annotated pairs: retraining a template
    model from it would silently drop its classifier, so the job says what to do."""
    from types import SimpleNamespace
    from typing import Any, cast

    from huoyan.server.training import Trainer, TrainingError
    from huoyan.store.blobs import BlobStore, file_sha256

    blobs = BlobStore(tmp_path / "blobs")
    sha = file_sha256(template_model)
    blobs.put_file(template_model, sha)
    versions = SimpleNamespace(active=lambda station: {"model_sha256": sha, "path": str(template_model), "version": 1})
    host = SimpleNamespace(station_id="aoi-1")
    trainer = Trainer(cast(Any, versions), cast(Any, None), lambda: {"aoi-1": cast(Any, host)}, blobs, tmp_path)
    with pytest.raises(
        TrainingError, match=r"learns from annotated template/test pairs.*huoyan fit --detector template"
    ):
        trainer._train({"station_id": "aoi-1", "params": {}, "id": 1})
