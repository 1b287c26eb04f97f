"""What a recipe and its model make of a station: the inspector (detector, decision
policy, retention), what the record store registers, and the derived recipe version
under which a threshold set on the line is recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huoyan.core.detector import Detector, ImageDetector, needs_own_template
from huoyan.core.recipe import Recipe
from huoyan.decision.judge import Policy, decider_for
from huoyan.station.inspect import Inspector, Previewer
from huoyan.station.templates import TemplateLibrary
from huoyan.vision.imageio import decode_image


def recipe_config(recipe: Recipe) -> dict[str, Any]:
    """The recipe half of what the record store registers."""
    return {
        "station_id": recipe.station,
        "product": recipe.product,
        "recipe_id": recipe.recipe,
        "recipe_version": recipe.version,
        "recipe_sha256": recipe.content_sha256(),
        "recipe_body": recipe.model_dump(mode="json", by_alias=True),
    }


def with_threshold(recipe: Recipe, threshold: float | None) -> Recipe:
    """``recipe`` deciding at a fixed raw-score threshold (None: the model's calibrated one),
    as a derived version so that every record names the threshold rule that decided it."""
    if threshold is None:
        return recipe
    decision = recipe.decision.model_copy(update={"threshold": float(threshold)})
    return recipe.model_copy(update={"decision": decision, "version": f"{recipe.version}+threshold={threshold:.6g}"})


def store_config(recipe: Recipe, model_path: Path, model: Detector, model_sha: str) -> dict[str, Any]:
    """What the record store registers for a recipe and its model."""
    return {
        **recipe_config(recipe),
        "model_sha256": model_sha,
        "model_name": model_path.name,
        "model_card": model.card_.model_dump(mode="json"),
    }


def make_inspector(
    detector: ImageDetector, recipe: Recipe, model_sha: str, preview: Previewer | None = None
) -> Inspector:
    """The station's inspector: the detector scores, the recipe's decision policy judges."""
    policy = Policy.of(detector.threshold, recipe.decision, recipe.preprocess.mm_per_px)
    inspector = Inspector(detector, decider_for(detector, policy), recipe, model_sha, decode_image, preview=preview)
    if needs_own_template(detector):
        if recipe.templates is None:
            raise ValueError(
                "the model compares each part with its own golden template: the recipe needs a 'templates' "
                "section (folder, and pattern/name if the files are not named <id>_test / <id>_temp)"
            )
        inspector.templates = TemplateLibrary(recipe.templates, recipe.preprocess)
    return inspector
