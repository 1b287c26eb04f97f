"""Model artifact: one safetensors file holding the memory bank and the model card.

Layout: tensor ``bank`` (float32 or float16) and header metadata with the format tag,
the detector kind (``patchcore``; files from before kinds were recorded are PatchCore's),
the model card JSON, the estimator parameters JSON, and SHA-256 digests of the card and
of the bank bytes. safetensors never unpickles anything; its own parser rejects a
truncated file, and the digests catch edits to the card or the bank. Loading also
refuses other formats, newer major versions and a bank that contradicts its card.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, ValidationError
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from huoyan.core.models import ModelCard
from huoyan.vision.backbone import BACKBONES

FORMAT = "huoyan-model"
FORMAT_VERSION = 1
SUFFIX = ".safetensors"
KIND = "patchcore"


class ArtifactError(ValueError):
    """A model file is missing, damaged, tampered with or incompatible."""


class PatchCoreDetails(BaseModel):
    """What a PatchCore model card records of the model itself (``ModelCard.details``)."""

    backbone: str
    layers: list[int]
    image_size: int
    feature_dim: int
    bank_size: int
    bank_dtype: str
    coreset_ratio: float | None
    bank_images: int = Field(description="good images whose patches built the memory bank")
    bank_sha256: str = ""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_model(path: str | Path, bank: np.ndarray, card: ModelCard, params: dict[str, Any]) -> Path:
    """Write the artifact atomically (temp file + rename) and return its path."""
    p = Path(path)
    if p.suffix != SUFFIX:
        p = p.with_name(p.name + SUFFIX)
    bank = np.ascontiguousarray(bank)
    card = card.model_copy(update={"details": {**card.details, "bank_sha256": _sha256(bank.tobytes())}})
    card_json = card.model_dump_json()
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "kind": KIND,
        "card": card_json,
        "card_sha256": _sha256(card_json.encode()),
        "params": json.dumps(params, sort_keys=True),
    }
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    save_file({"bank": bank}, str(tmp), metadata=metadata)
    os.replace(tmp, p)
    return p


def _read_metadata(p: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(p), framework="numpy") as f:
        meta = f.metadata()
    return dict(meta or {})


def _existing(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file() and p.with_name(p.name + SUFFIX).is_file():
        p = p.with_name(p.name + SUFFIX)
    if not p.is_file():
        raise ArtifactError(f"{p}: no such model file")
    return p


def artifact_kind(path: str | Path) -> str:
    """The detector kind a model file was written by, from its header alone."""
    p = _existing(path)
    try:
        meta = _read_metadata(p)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{p}: not a readable model file (truncated or corrupt: {exc})") from exc
    if meta.get("format") != FORMAT:
        raise ArtifactError(f"{p}: not a Huoyan model (format {meta.get('format')!r})")
    return meta.get("kind") or KIND  # written before kinds were recorded: PatchCore


def load_model(path: str | Path) -> tuple[np.ndarray, ModelCard, dict[str, Any]]:
    """Read and verify an artifact; raise ``ArtifactError`` with the reason if unusable."""
    p = _existing(path)
    try:
        meta = _read_metadata(p)
        tensors = load_file(str(p))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{p}: not a readable model file (truncated or corrupt: {exc})") from exc
    if meta.get("format") != FORMAT:
        raise ArtifactError(f"{p}: not a Huoyan model (format {meta.get('format')!r})")
    if meta.get("kind", KIND) != KIND:
        raise ArtifactError(f"{p}: a {meta['kind']!r} model, not a PatchCore memory bank")
    try:
        version = int(meta.get("format_version", ""))
    except ValueError as exc:
        raise ArtifactError(f"{p}: unreadable format version") from exc
    if version > FORMAT_VERSION:
        raise ArtifactError(
            f"{p}: made by a newer Huoyan (model format {version}, this one reads up to {FORMAT_VERSION})"
        )
    card_json = meta.get("card", "")
    if _sha256(card_json.encode()) != meta.get("card_sha256"):
        raise ArtifactError(f"{p}: model card does not match its checksum (file was modified)")
    try:
        card = ModelCard.model_validate_json(card_json)
        params = json.loads(meta.get("params", ""))
    except (ValidationError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{p}: invalid model card or parameters: {exc}") from exc
    try:
        details = PatchCoreDetails.model_validate(card.details)
    except ValidationError as exc:
        raise ArtifactError(f"{p}: the model card lacks PatchCore's details: {exc}") from exc
    bank = tensors.get("bank")
    if bank is None:
        raise ArtifactError(f"{p}: memory bank missing")
    if _sha256(np.ascontiguousarray(bank).tobytes()) != details.bank_sha256:
        raise ArtifactError(f"{p}: memory bank does not match its checksum (file was modified)")
    if (
        bank.ndim != 2
        or bank.shape != (details.bank_size, details.feature_dim)
        or str(bank.dtype) != details.bank_dtype
    ):
        raise ArtifactError(f"{p}: memory bank shape {bank.shape}/{bank.dtype} contradicts the model card")
    if details.backbone not in BACKBONES:
        raise ArtifactError(f"{p}: backbone {details.backbone!r} is not supported by this Huoyan")
    return bank, card, params
