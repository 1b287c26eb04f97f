"""PatchCore's model file: the shared envelope (``huoyan.core.artifact``) holding tensor
``bank`` (float32 or float16), with the bank's digest as ``bank_sha256`` in the card's
details (files from before kinds were recorded are PatchCore's and carry it too).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from huoyan.core.artifact import ArtifactError, read_envelope, sha256, write_envelope
from huoyan.core.models import ModelCard
from huoyan.vision.backbone import BACKBONES

KIND = "patchcore"


class BankUpdate(BaseModel):
    """Good images that joined a fitted model's bank later (``PatchCore.partial_fit``)."""

    at: datetime
    images: int
    content_sha256: str = Field(description="digest of the added images, in order")
    rows_added: int
    parent_bank_sha256: str = Field(description="the bank it was added to")


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
    coreset_radius: float | None = Field(
        default=None,
        description="the greedy selection's covering radius (in its seeded projection): patches added later "
        "join the bank only beyond it (absent in models made before it was kept)",
    )
    updates: list[BankUpdate] = Field(default_factory=list, description="images added after fitting, in order")
    calibration_scores: str = Field(
        default="held-out",
        description="how the calibration scores were obtained: 'held-out' images, or 'leave-one-out' (few images, "
        "each scored against a bank of the others; every patch kept)",
    )
    map_scale: float = Field(
        default=1.0,
        description="the distance map is multiplied by it, so that it crosses the threshold where its maximum "
        "crosses its own calibrated level (1.0 when the image score is the map's maximum)",
    )


def save_model(path: str | Path, bank: np.ndarray, card: ModelCard, params: dict[str, Any]) -> Path:
    """Write a PatchCore artifact atomically (temp file + rename) and return its path."""
    bank = np.ascontiguousarray(bank)
    card = card.model_copy(update={"details": {**card.details, "bank_sha256": sha256(bank.tobytes())}})
    return write_envelope(path, KIND, {"bank": bank}, card, params)


def load_model(path: str | Path) -> tuple[np.ndarray, ModelCard, dict[str, Any]]:
    """Read and verify a PatchCore artifact; raise ``ArtifactError`` with the reason if unusable."""
    p, tensors, card, params = read_envelope(path, KIND)
    try:
        details = PatchCoreDetails.model_validate(card.details)
    except ValidationError as exc:
        raise ArtifactError(f"{p}: the model card lacks PatchCore's details: {exc}") from exc
    bank = tensors.get("bank")
    if bank is None:
        raise ArtifactError(f"{p}: memory bank missing")
    if sha256(np.ascontiguousarray(bank).tobytes()) != details.bank_sha256:
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
