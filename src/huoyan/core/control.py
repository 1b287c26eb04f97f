"""The station as the line sees it: what a PLC interface may ask of a running station.

Line-feedback servers (OPC UA, Modbus) take triggers, stop and restart intake and
switch recipes. They do so through ``LineControl`` only, so ``huoyan.io`` never
reaches into the station or the vision engine; the runner provides the implementation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class RecipeInfo:
    """One recipe the station can run: what a PLC selects and what a result names."""

    index: int  # the PLC's recipe number (0 when the recipe is not in the station's table)
    recipe_id: str
    version: str
    product: str
    sha256: str
    model_sha256: str


class RecipeSwitchError(RuntimeError):
    """The requested recipe is unknown, invalid, or its model cannot be loaded."""


class LineControl(Protocol):
    @property
    def triggerable(self) -> bool:
        """True when each part is taken on a trigger (a camera in trigger mode)."""
        ...

    def trigger(self, payload: dict[str, Any]) -> None:
        """Take one part now; ``payload`` may carry its part id and the PLC's job ids."""
        ...

    def pause(self) -> None:
        """Stop taking parts; parts already taken are still inspected and reported."""
        ...

    def resume(self) -> None: ...

    def active_recipe(self) -> RecipeInfo: ...

    def recipes(self) -> list[RecipeInfo]:
        """Every recipe the line may switch to (the active one included)."""
        ...

    async def prepare_recipe(self, key: str | int) -> RecipeInfo:
        """Switch to the recipe with this id (str), index (int) or product id ("product:<id>").
        Raises ``RecipeSwitchError``."""
        ...

    async def add_recipe(self, recipe_id: str) -> RecipeInfo:
        """Add ``<recipe_dir>/<recipe_id>.yaml`` to the recipe table (kept across restarts).
        Raises ``RecipeSwitchError`` (``LookupError`` when there is no such file)."""
        ...

    async def remove_recipe(self, recipe_id: str) -> None:
        """Take a recipe off the table; not the active one. Raises ``RecipeSwitchError``."""
        ...

    async def acknowledge_alarms(self, by: str, comment: str) -> int:
        """Acknowledge every raised alarm of the station; how many there were."""
        ...
