"""Recipe validation: good files load with paths resolved; bad ones name the bad field."""

from __future__ import annotations

from pathlib import Path

import pytest

from huoyan.core.recipe import CameraSource, HotFolderSource, RecipeError, load_recipe, parse_recipe

BASE = """
station: line1-cam1
product: washer
recipe: washer-top
version: "3"
source: {type: hot_folder, path: inbox}
model: models/washer.safetensors
"""


def test_valid_recipe_resolves_paths_against_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "r.yaml"
    path.parent.mkdir()
    path.write_text(BASE + "decision: {threshold: 2.5, ng_if_any_region: [{field: area_px, above: 30}]}\n")
    r = load_recipe(path)
    assert isinstance(r.source, HotFolderSource)
    assert r.source.path == path.parent / "inbox"
    assert r.model == path.parent / "models/washer.safetensors"
    assert r.storage.data_dir == path.parent / "huoyan-data"
    assert r.decision.threshold == 2.5 and r.decision.ng_if_any_region[0].above == 30
    assert r.part_id.source == "filename"
    assert r.content_sha256() == load_recipe(path).content_sha256()


def test_changed_content_changes_the_hash(tmp_path: Path) -> None:
    a = parse_recipe(BASE, tmp_path)
    b = parse_recipe(BASE + "storage: {keep_ok_every: 3}\n", tmp_path)
    assert a.content_sha256() != b.content_sha256()


def test_fields_added_by_an_upgrade_leave_stored_recipe_hashes_alone(tmp_path: Path) -> None:
    """A recipe stored by the previous release must not look edited after an upgrade."""
    import hashlib
    import json

    a = parse_recipe(BASE, tmp_path)
    before = a.model_dump(mode="json", by_alias=True, exclude={"feedback"})
    # What earlier releases hashed: without max_image_pixels and detector (#13, #14), templates (#15),
    # machine, channels and fusion (#16), lot and quality (#17), storage.retention (#21).
    del before["preprocess"]["max_image_pixels"], before["detector"], before["templates"]
    del before["machine"], before["channels"], before["fusion"], before["lot"], before["quality"]
    del before["storage"]["retention"]
    previous = hashlib.sha256(json.dumps(before, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()
    assert a.content_sha256() == previous
    limited = parse_recipe(BASE + "preprocess: {max_image_pixels: 1000000}\n", tmp_path)
    assert limited.content_sha256() != previous
    paired = parse_recipe(BASE + "templates: {folder: golden}\n", tmp_path)
    assert paired.content_sha256() != previous
    kept = parse_recipe(BASE + "storage: {retention: {ok_days: 90}}\n", tmp_path)
    assert kept.storage.retention.ok_days == 90 and kept.content_sha256() != previous


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ("preprocess: {roi: [0, 0, 0, 10]}", "preprocess.roi"),
        ("preprocess: {rotate: 45}", "preprocess.rotate"),
        ("decision: {threshold: -1}", "decision.threshold"),
        ("decision: {ng_if_any_region: [{field: colour, above: 1}]}", "decision.ng_if_any_region.0.field"),
        ("storage: {keep_ok_evry: 3}", "storage.keep_ok_evry"),
        ("storage: {retention: {ok_days: 0}}", "storage.retention.ok_days"),
        ("part_id: {from: filename, pattern: '(unclosed'}", "part_id.pattern"),
        ("part_id: {from: trigger}", "part_id.from 'trigger' needs a camera"),
        ("decision: {ng_if_any_region: [{field: area_mm2, above: 1}]}", "needs preprocess.mm_per_px"),
    ],
)
def test_bad_fields_are_named(tmp_path: Path, extra: str, field: str) -> None:
    with pytest.raises(RecipeError) as err:
        parse_recipe(BASE + extra + "\n", tmp_path, "r.yaml")
    assert field in str(err.value)
    assert str(err.value).startswith("r.yaml: invalid recipe")


def test_unknown_source_type_and_missing_fields(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="source"):
        parse_recipe(BASE.replace("hot_folder", "ftp"), tmp_path)
    with pytest.raises(RecipeError, match="station"):
        parse_recipe("\n".join(line for line in BASE.splitlines() if not line.startswith("station")), tmp_path)


def test_camera_trigger_recipe(tmp_path: Path) -> None:
    text = BASE.replace("{type: hot_folder, path: inbox}", "{type: camera, device: rtsp://10.0.0.5/s, mode: trigger}")
    r = parse_recipe(text + "part_id: {from: trigger, key: serial}\n", tmp_path)
    assert isinstance(r.source, CameraSource) and r.source.device == "rtsp://10.0.0.5/s"
    assert r.part_id.key == "serial"


def test_unreadable_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="cannot read"):
        load_recipe(tmp_path / "missing.yaml")
    with pytest.raises(RecipeError, match="not valid YAML"):
        parse_recipe("station: [unclosed", tmp_path)
    with pytest.raises(RecipeError, match="mapping"):
        parse_recipe("- a\n- b\n", tmp_path)
