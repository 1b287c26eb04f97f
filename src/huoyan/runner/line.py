"""The live station controller: what the line (OPC UA, Modbus) and the server may ask of
a running station. Triggers, pause and resume, recipe switches, model activation and
thresholds set on the line, each done between parts."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from huoyan.core.control import RecipeInfo, RecipeSwitchError
from huoyan.core.recipe import Recipe, RecipeError, load_recipe
from huoyan.detectors import load_station_detector
from huoyan.runner.recipes import (
    StationInspector,
    make_fused_inspector,
    make_inspector,
    recipe_config,
    store_config,
    with_threshold,
)
from huoyan.station.fuse import FusedInspector
from huoyan.station.inspect import Inspector, Previewer
from huoyan.station.inspect_signals import SignalInspector
from huoyan.station.pipeline import Station
from huoyan.station.sources import Camera
from huoyan.store.blobs import file_sha256
from huoyan.store.records import RecipeConflict, RecordStore, acknowledge_all

log = logging.getLogger(__name__)

RECIPE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class StationLine:
    """``LineControl`` for a running station: triggers, pause/resume and recipe switches.

    The recipe table comes from the recipe's ``feedback.recipes``; each entry must be
    for the same station and source (a switch changes what is judged and how, not where
    parts come from). A switch pauses intake, waits for the parts in flight, loads the
    new model, registers recipe and model with the store and resumes. The line may add
    recipes from ``feedback.recipe_dir`` and remove them; those changes are kept in
    ``<data_dir>/recipe-table.json`` and applied over the recipe's table at each start.
    """

    def __init__(self, station: Station, store: RecordStore, recipe: Recipe, model_sha: str, runtime: str) -> None:
        self.station = station
        self.store = store
        self.recipe = recipe
        self.base_recipe = recipe  # without a threshold set on the line
        self.config: dict[str, Any] = {}  # what the store was last told (set by open_station)
        self.runtime = runtime
        self.table = {slot.index: Path(slot.file) for slot in recipe.feedback.recipes}
        self.changes_file = Path(recipe.storage.data_dir) / "recipe-table.json"
        self.changes = self._read_changes()
        for added in self.changes["added"].values():
            self.table.setdefault(int(added["index"]), Path(added["file"]))
        self.catalogue = self._read_table()
        for index in [i for i, r in self.catalogue.items() if r.recipe in self.changes["removed"]]:
            del self.catalogue[index], self.table[index]
        self._active = self._info(recipe, model_sha)
        self._lock = asyncio.Lock()
        self.preview: Previewer | None = None

    def _read_table(self) -> dict[int, Recipe]:
        """The table's recipes, read once at start (a switch reads its file again); bad entries are logged."""
        out = {}
        for index, path in self.table.items():
            try:
                out[index] = load_recipe(path)
            except RecipeError as exc:
                log.warning("recipe table entry %d: %s", index, exc)
        return out

    def _read_changes(self) -> dict[str, Any]:
        try:
            changes = json.loads(self.changes_file.read_text())
            return {"added": dict(changes.get("added", {})), "removed": list(changes.get("removed", []))}
        except FileNotFoundError:
            return {"added": {}, "removed": []}
        except (OSError, ValueError, AttributeError) as exc:
            log.error("%s is unreadable (%s); the recipe file's table is used as it is", self.changes_file, exc)
            return {"added": {}, "removed": []}

    def _save_changes(self) -> None:
        tmp = self.changes_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.changes, indent=2))
        os.replace(tmp, self.changes_file)

    def _index_of(self, recipe: Recipe) -> int:
        for index, other in self.catalogue.items():
            if other.recipe == recipe.recipe and other.version == recipe.version:
                return index
        return 0

    def _info(self, recipe: Recipe, model_sha: str, index: int | None = None) -> RecipeInfo:
        return RecipeInfo(
            index=self._index_of(recipe) if index is None else index,
            recipe_id=recipe.recipe,
            version=recipe.version,
            product=recipe.product,
            sha256=recipe.content_sha256(),
            model_sha256=model_sha,
        )

    @property
    def triggerable(self) -> bool:
        src = self.station.source
        return isinstance(src, Camera) and src.cfg.mode == "trigger"

    def trigger(self, payload: dict[str, Any]) -> None:
        if not isinstance(self.station.source, Camera):
            raise RuntimeError("this station's source takes no triggers")
        self.station.source.trigger(payload)

    def pause(self) -> None:
        self.station.pause()

    def resume(self) -> None:
        self.station.resume()

    def active_recipe(self) -> RecipeInfo:
        return self._active

    def recipes(self) -> list[RecipeInfo]:
        out = {self._active.index: self._active} if self._active.index == 0 else {}
        for index, r in self.catalogue.items():
            out[index] = self._active if index == self._active.index else self._info(r, "", index)
        return list(out.values())

    def _find(self, key: str | int) -> tuple[int, Path]:
        if isinstance(key, int):
            if key in self.table:
                return key, self.table[key]
            raise RecipeSwitchError(f"no recipe with index {key} in this station's table")
        for index, r in self.catalogue.items():
            if (key.startswith("product:") and r.product == key[8:]) or r.recipe == key:
                return index, self.table[index]
        raise RecipeSwitchError(f"no recipe {key!r} in this station's table")

    def _load(self, path: Path) -> tuple[Recipe, StationInspector, dict[str, Any]]:
        try:
            recipe = load_recipe(path)
        except RecipeError as exc:
            raise RecipeSwitchError(str(exc)) from exc
        if recipe.station != self.recipe.station or recipe.source != self.recipe.source:
            raise RecipeSwitchError(f"{path}: a recipe switch keeps the station id and the source")
        return (recipe, *self._load_model(recipe, Path(recipe.model)))

    def _load_model(self, recipe: Recipe, model_path: Path) -> tuple[StationInspector, dict[str, Any]]:
        if recipe.channels:
            if Path(model_path) != Path(recipe.model):
                raise RecipeSwitchError(
                    "a station of several channels runs its recipe's models: give the channels new models in "
                    "a new recipe version"
                )
            try:
                return make_fused_inspector(recipe, self.runtime, self.preview, self.station.emit)
            except (OSError, ValueError) as exc:
                raise RecipeSwitchError(f"cannot load the channels' models: {exc}") from exc
        try:
            model = load_station_detector(model_path, recipe.detector, self.runtime)
            sha = file_sha256(model_path)
            inspector = make_inspector(model, recipe, sha, self.preview, self.station.emit)
        except (OSError, ValueError) as exc:
            raise RecipeSwitchError(f"cannot load model {model_path}: {exc}") from exc
        return inspector, store_config(recipe, model_path, model, sha)

    async def _swap(self, recipe: Recipe, inspector: StationInspector, config: dict[str, Any]) -> None:
        """Pause intake, wait for the parts in flight, switch store and inspector, resume."""
        was_paused = self.station.paused
        self.station.pause()
        try:
            while self.station.in_flight:
                await asyncio.sleep(0.005)
            try:
                await asyncio.to_thread(self.store.switch, **config)
            except RecipeConflict as exc:
                raise RecipeSwitchError(str(exc)) from exc
            self.station.use(inspector)
            self.recipe = recipe
            self.config = config
        finally:
            if not was_paused:
                self.station.resume()

    async def prepare_recipe(self, key: str | int) -> RecipeInfo:
        async with self._lock:
            index, path = self._find(key)
            recipe, inspector, config = await asyncio.to_thread(self._load, path)
            await self._swap(recipe, inspector, config)
            self.base_recipe = recipe
            self._active = self._info(recipe, config["model_sha256"], index)
            log.info("recipe switched to %s v%s (index %d)", recipe.recipe, recipe.version, index)
            return self._active

    async def add_recipe(self, recipe_id: str) -> RecipeInfo:
        async with self._lock:
            folder = self.recipe.feedback.recipe_dir
            if folder is None:
                raise RecipeSwitchError("this station has no feedback.recipe_dir to add recipes from")
            if not RECIPE_ID.fullmatch(recipe_id):
                raise RecipeSwitchError(f"{recipe_id!r} is not a recipe id")
            if any(r.recipe == recipe_id for r in self.catalogue.values()):
                raise RecipeSwitchError(f"recipe {recipe_id} is in the table already")
            path = Path(folder) / f"{recipe_id}.yaml"
            if not path.is_file():
                raise LookupError(f"no recipe file {path}")
            try:
                recipe = await asyncio.to_thread(load_recipe, path)
            except RecipeError as exc:
                raise RecipeSwitchError(str(exc)) from exc
            if recipe.recipe != recipe_id:
                raise RecipeSwitchError(f"{path} holds recipe {recipe.recipe}, not {recipe_id}")
            if recipe.station != self.recipe.station or recipe.source != self.recipe.source:
                raise RecipeSwitchError(f"{path}: a recipe of the table keeps the station id and the source")
            index = max(self.table, default=0) + 1
            self.table[index], self.catalogue[index] = path, recipe
            self.changes["added"][recipe_id] = {"index": index, "file": str(path)}
            self.changes["removed"] = [r for r in self.changes["removed"] if r != recipe_id]
            self._save_changes()
            log.info("recipe %s added to the table as index %d", recipe_id, index)
            return self._info(recipe, "", index)

    async def remove_recipe(self, recipe_id: str) -> None:
        async with self._lock:
            found = [i for i, r in self.catalogue.items() if r.recipe == recipe_id]
            if not found:
                raise LookupError(f"no recipe {recipe_id} in the table")
            if self._active.recipe_id == recipe_id:
                raise RecipeSwitchError(f"recipe {recipe_id} is the active one; prepare another first")
            for index in found:
                del self.table[index], self.catalogue[index]
            if self.changes["added"].pop(recipe_id, None) is None:
                self.changes["removed"].append(recipe_id)
            self._save_changes()
            log.info("recipe %s removed from the table", recipe_id)

    async def acknowledge_alarms(self, by: str, comment: str) -> int:
        count = await asyncio.to_thread(acknowledge_all, self.store.engine, self.recipe.station, by, comment)
        log.info("%d alarms acknowledged by %s: %s", count, by, comment)
        return count

    async def use_model(self, model_path: Path) -> str:
        """Judge from now on with another model under the same recipe (a model version
        activated or rolled back); returns the model's sha256."""
        async with self._lock:
            # A threshold set on the line is a raw score of the old model: the new one
            # decides at its own calibrated threshold.
            recipe = self.base_recipe
            inspector, config = await asyncio.to_thread(self._load_model, recipe, model_path)
            await self._swap(recipe, inspector, config)
            self._active = self._info(self.recipe, config["model_sha256"], self._active.index)
            log.info("model switched to %s (%s)", model_path, config["model_sha256"][:12])
            return str(config["model_sha256"])

    async def set_threshold(self, threshold: float | None) -> RecipeInfo:
        """Decide at ``threshold`` (a raw score) from the next part on, or at the model's
        calibrated threshold again (None). Registered as a derived recipe version."""
        async with self._lock:
            current = self.station.inspector
            if not isinstance(current, Inspector | SignalInspector):
                raise RecipeSwitchError("this station's inspector takes no threshold")
            recipe = with_threshold(self.base_recipe, threshold)
            inspector = make_inspector(current.detector, recipe, current.model_sha256, self.preview, self.station.emit)
            await self._swap(recipe, inspector, {**self.config, **recipe_config(recipe)})
            self._active = self._info(recipe, current.model_sha256, self._active.index)
            log.info("threshold set to %s (recipe version %s)", threshold or "calibrated", recipe.version)
            return self._active

    def set_preview(self, preview: Previewer | None) -> None:
        """Draw live-view previews from now on (or stop, with None)."""
        self.preview = preview
        inspector = self.station.inspector
        if isinstance(inspector, Inspector | FusedInspector):
            inspector.preview = preview
