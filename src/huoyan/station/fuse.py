"""A part of several channels to one stored record: each channel's inspector judges its
file, the recipe's fusion rule (``decision.fusion``) judges the part.

The record holds every channel's verdict (``channels``, with the model that judged it),
and every channel's regions, evidence and measurements, each tagged with its channel.
A channel whose file never came (the part waited ``fusion.wait_s``) is that channel's
ERROR; a file that matched no channel is an ERROR record of its own. The live view
shows the first channel that drew a preview.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from huoyan.core.models import ChannelVerdict, Verdict
from huoyan.core.recipe import Recipe
from huoyan.core.records import StoredRecord
from huoyan.decision.fusion import fuse
from huoyan.station.gather import MISSING, PARTS, UNMATCHED
from huoyan.station.inspect import Prepared, record_for


@dataclass
class FusedInspector:
    channels: dict[str, Any]  # channel name -> its inspector (images or sensor recordings), in the recipe's order
    models: dict[str, str]  # channel name -> sha256 of its model
    recipe: Recipe

    @property
    def model_sha256(self) -> str:
        return next(iter(self.models.values()))

    @property
    def threshold(self) -> float:
        return self.recipe.fusion.threshold if self.recipe.fusion.rule == "weighted" else 1.0

    @property
    def preview(self) -> Any:
        return next((i.preview for i in self.channels.values() if getattr(i, "preview", None)), None)

    @preview.setter
    def preview(self, preview: Any) -> None:
        for inspector in self.channels.values():
            if hasattr(inspector, "preview"):
                inspector.preview = preview

    def prepare(self, a: Any) -> Prepared:
        if UNMATCHED in a.meta:
            return Prepared(a, None, str(a.meta[UNMATCHED]))
        return Prepared(a, None, parts=[(name, self.channels[name].prepare(sub)) for name, sub in a.meta[PARTS]])

    def run(self, batch: Sequence[Prepared]) -> list[StoredRecord]:
        done: dict[tuple[int, str], StoredRecord] = {}
        for name, inspector in self.channels.items():
            mine = [(i, sub) for i, p in enumerate(batch) for channel, sub in (p.parts or []) if channel == name]
            if mine:
                for (i, _), item in zip(mine, inspector.run([sub for _, sub in mine]), strict=True):
                    done[(i, name)] = item
        out = []
        for i, p in enumerate(batch):
            if p.parts is None:
                record = record_for(p.arrival, self.recipe, self.model_sha256, self.threshold,
                                    verdict=Verdict.ERROR, error=p.error or "no channel")  # fmt: skip
                out.append(StoredRecord(record))
                continue
            items = {name: done[(i, name)] for name, _ in p.parts}
            out.append(self._fused(p, items, list(p.arrival.meta.get(MISSING, []))))
        return out

    def _fused(self, p: Prepared, items: dict[str, StoredRecord], missing: list[str]) -> StoredRecord:
        channels = []
        for name in self.channels:
            if name in items:
                r = items[name].record
                channels.append(
                    ChannelVerdict(
                        channel=name,
                        verdict=r.verdict,
                        score=r.score,
                        normalised_score=r.normalised_score,
                        error=r.error,
                        diagnosis=r.diagnosis,
                        model_sha256=self.models[name],
                    )
                )
            else:
                wait = self.recipe.fusion.wait_s
                channels.append(
                    ChannelVerdict(
                        channel=name,
                        verdict=Verdict.ERROR,
                        error=f"no file of channel {name} for this part within {wait:g} s",
                        model_sha256=self.models[name],
                    )
                )
        fused = fuse(channels, self.recipe.fusion)
        records = {name: items[name].record for name in self.channels if name in items}
        blobs = {sha: data for item in items.values() for sha, data in item.blobs.items()}
        ng = [c.diagnosis for c in channels if c.verdict == Verdict.NG and c.diagnosis]
        first_image = next((r for r in records.values() if r.width is not None), None)
        record = record_for(
            p.arrival,
            self.recipe,
            self.model_sha256,
            self.threshold,
            verdict=fused.verdict,
            score=fused.score,
            normalised_score=fused.score,
            rules=fused.rules,
            error=fused.error if fused.verdict == Verdict.ERROR else None,
            width=first_image.width if first_image else None,
            height=first_image.height if first_image else None,
            diagnosis=ng[0] if ng else None,
            channels=channels,
            regions=[g.model_copy(update={"channel": n}) for n, r in records.items() for g in r.regions],
            evidence=[e.model_copy(update={"channel": n}) for n, r in records.items() for e in r.evidence],
            measurements=[m.model_copy(update={"channel": n}) for n, r in records.items() for m in r.measurements],
        )
        preview = next((item.preview for item in items.values() if item.preview is not None), None)
        return StoredRecord(record, blobs, preview)
