"""Inspection records and their images in a package, redacted by the export's policy.

A package for a supplier or a retraining site may carry a selection of records::

    records/records.jsonl          one record per line, with its reviews
    records/evidence/<sha256>.png  the images and anomaly maps they rest on (``--images``)

What names a part or a person is redacted on the way out, as the export's policy says:

- ``part_ids``: the part id, the record key, the source (file) name, the trigger's
  payload (where the PLC's part and job ids live) and those names inside an error text;
- ``people``: reviewers' names;
- ``comments``: reviewers' notes, free text that may say anything.

Each is kept, stripped or replaced by a keyed pseudonym (comments only kept or stripped).
A pseudonym is an HMAC-SHA256 of the value under a key derived from the plant's audit
key: a part has the same pseudonym in every export of this plant, so a supplier can say
"part-3fa9… again", and only this plant can say which part that is
(``huoyan pkg pseudonym``). The policy goes into the signed manifest.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import Engine

from huoyan.core.records import StoredInspection
from huoyan.store.blobs import BlobStore
from huoyan.store.records import RecordFilter, query_inspections
from huoyan.store.reviews import Reviews

FOLDER = "records"
LINES = "records.jsonl"
EVIDENCE = "evidence"
PAGE = 500
_SUFFIX = {"image/png": ".png", "image/jpeg": ".jpg", "image/bmp": ".bmp", "image/tiff": ".tif"}


class Redaction(BaseModel):
    """What an export does with identifying fields."""

    model_config = ConfigDict(extra="forbid")

    part_ids: Literal["keep", "strip", "pseudonym"] = "pseudonym"
    people: Literal["keep", "strip", "pseudonym"] = "strip"
    comments: Literal["keep", "strip"] = "strip"

    @classmethod
    def parse(cls, text: str) -> Redaction:
        """``part_ids=pseudonym,people=strip,comments=strip``; fields not named keep their default."""
        try:
            pairs = dict(item.split("=", 1) for item in text.split(",") if item.strip())
            return cls.model_validate({k.strip(): v.strip() for k, v in pairs.items()})
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            detail = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            ) if isinstance(exc, ValidationError) else "write field=choice pairs separated by commas"  # fmt: skip
            raise ValueError(f"redaction policy {text!r}: {detail}") from exc


def pseudonym_key(audit_key: bytes) -> bytes:
    """The plant's pseudonym key, derived from its audit key (no new secret to keep)."""
    return hmac.new(audit_key, b"huoyan pseudonyms v1", hashlib.sha256).digest()


def pseudonym(key: bytes, kind: str, value: str) -> str:
    """``kind-<20 hex>``: the same value gives the same pseudonym in every export."""
    return f"{kind}-{hmac.new(key, f'{kind}:{value}'.encode(), hashlib.sha256).hexdigest()[:20]}"


@dataclass(frozen=True)
class RecordSelection:
    """Which records go into a package, from where, and how they are redacted."""

    engine: Engine
    where: RecordFilter
    limit: int
    blobs: BlobStore | None  # None: records only, no images
    policy: Redaction
    key: bytes  # the pseudonym key

    def describe(self) -> dict[str, Any]:
        """For the manifest: the filter, the policy and whether images came along."""
        w = self.where
        chosen = {
            "station": w.station, "since": w.since, "until": w.until, "verdict": w.verdict, "recipe": w.recipe,
        }  # fmt: skip
        return {
            "filter": {k: str(v) for k, v in chosen.items() if v is not None},
            "limit": self.limit,
            "images": self.blobs is not None,
            "redaction": self.policy.model_dump(),
        }


# What a package says of each review: the judgement, not the database's ids or chain.
REVIEW_FIELDS = ("outcome", "label", "regions", "note", "reviewer", "at")


def _reviews(engine: Engine, ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    found = Reviews(engine).of_inspections(ids)
    return {
        i: [{k: r[k].isoformat() if k == "at" else r[k] for k in REVIEW_FIELDS} for r in rows]
        for i, rows in found.items()
    }


def _pages(selection: RecordSelection) -> Iterator[list[StoredInspection]]:
    done = 0
    while done < selection.limit:
        page = query_inspections(selection.engine, selection.where, min(PAGE, selection.limit - done), done)
        if not page:
            return
        yield page
        done += len(page)


class _Redactor:
    def __init__(self, policy: Redaction, key: bytes) -> None:
        self.policy, self.key = policy, key

    def _part(self, kind: str, value: str, n: int) -> str | None:
        if self.policy.part_ids == "keep":
            return value
        if self.policy.part_ids == "pseudonym":
            return pseudonym(self.key, kind, value)
        # Stripped: a record still needs a key and a name to be told apart; a part id it does not.
        return None if kind == "part" else f"{kind}-{n}"

    def _person(self, name: str) -> str | None:
        if self.policy.people == "keep":
            return name
        return pseudonym(self.key, "person", name) if self.policy.people == "pseudonym" else None

    def record(self, rec: StoredInspection, reviews: list[dict[str, Any]], n: int) -> dict[str, Any]:
        out = rec.model_dump(mode="json", exclude={"id"})
        names: dict[str, str] = {}  # original -> replacement, for error texts
        for field, kind in (("key", "record"), ("source_name", "source"), ("part_id", "part")):
            value = out.get(field)
            if value:
                out[field] = self._part(kind, value, n)
                if field == "source_name" and self.policy.part_ids != "keep":  # the file type stays readable
                    out[field] += PurePath(value).suffix
                names[value] = out[field] or "(part)"
        if out.get("trigger") and self.policy.part_ids != "keep":
            trigger = out["trigger"]
            out["trigger"] = (
                None
                if self.policy.part_ids == "strip"
                else {k: pseudonym(self.key, "trigger", json.dumps(v, sort_keys=True)) for k, v in trigger.items()}
            )
        if out.get("error"):
            for original, replacement in sorted(names.items(), key=lambda kv: -len(kv[0])):
                out["error"] = out["error"].replace(original, replacement)
        out["reviews"] = [
            {
                **r,
                "reviewer": self._person(r["reviewer"]),
                "note": r["note"] if self.policy.comments == "keep" else None,
            }
            for r in reviews
        ]
        return out


def write_records(selection: RecordSelection, folder: Path) -> int:
    """Write the selected records (and their evidence files) under ``folder``; how many."""
    redactor = _Redactor(selection.policy, selection.key)
    evidence = folder / EVIDENCE
    folder.mkdir(parents=True)
    n = 0
    with (folder / LINES).open("w", encoding="utf-8") as lines:
        for page in _pages(selection):
            reviews = _reviews(selection.engine, [r.id for r in page if r.id is not None])
            for rec in page:
                n += 1
                out = redactor.record(rec, reviews.get(rec.id or -1, []), n)
                if selection.blobs is not None:
                    out["missing_evidence"] = _copy_evidence(selection.blobs, rec, evidence)
                lines.write(json.dumps(out, ensure_ascii=False) + "\n")
    return n


def _copy_evidence(blobs: BlobStore, rec: StoredInspection, into: Path) -> list[str]:
    """Copy the record's evidence files; the digests whose blob is gone (retention)."""
    missing = []
    for e in rec.evidence:
        target = into / f"{e.sha256}{_SUFFIX.get(e.media_type, '.bin')}"
        if target.exists():
            continue
        if not blobs.has(e.sha256):
            missing.append(e.sha256)
            continue
        into.mkdir(exist_ok=True)
        shutil.copyfile(blobs.path(e.sha256), target)
    return missing
