"""Model files: one safetensors file per model, its tensors and its model card.

Every detector kind writes the same envelope (``write_artifact``/``read_artifact``):
tensors, and header metadata with the format tag, the detector kind, the model card
JSON, the estimator parameters JSON, and SHA-256 digests of the card and of each
tensor's bytes (the tensor digests are inside the card, so the card's digest covers
them). safetensors never unpickles anything; its own parser rejects a truncated file,
and the digests catch edits to the card or the tensors. Loading also refuses other
formats, newer major versions and a file of another kind. Files from before kinds
were recorded are PatchCore's (``huoyan.vision.artifact`` reads them).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from huoyan.core.models import ModelCard

FORMAT = "huoyan-model"
FORMAT_VERSION = 1
SUFFIX = ".safetensors"
LEGACY_KIND = "patchcore"  # the kind of files written before kinds were recorded


class ArtifactError(ValueError):
    """A model file is missing, damaged, tampered with or incompatible."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


TENSOR_DIGESTS = "tensor_sha256"  # the card's details entry with each tensor's digest


def write_artifact(
    path: str | Path, kind: str, tensors: dict[str, np.ndarray], card: ModelCard, params: dict[str, Any]
) -> Path:
    """Write a model file atomically (temp file + rename) and return its path. The card
    is stored with each tensor's digest in its details (``tensor_sha256``)."""
    tensors = {name: np.ascontiguousarray(t) for name, t in tensors.items()}
    digests = {name: sha256(t.tobytes()) for name, t in sorted(tensors.items())}
    card = card.model_copy(update={"details": {**card.details, TENSOR_DIGESTS: digests}})
    return write_envelope(path, kind, tensors, card, params)


def write_envelope(
    path: str | Path, kind: str, tensors: dict[str, np.ndarray], card: ModelCard, params: dict[str, Any]
) -> Path:
    """Write the file atomically (temp file + rename), named ``*.safetensors``; its path."""
    p = Path(path)
    if p.suffix != SUFFIX:
        p = p.with_name(p.name + SUFFIX)
    card_json = card.model_dump_json()
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "kind": kind,
        "card": card_json,
        "card_sha256": sha256(card_json.encode()),
        "params": json.dumps(params, sort_keys=True),
    }
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, p)
    return p


def read_metadata(p: Path) -> dict[str, str]:
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
        meta = read_metadata(p)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{p}: not a readable model file (truncated or corrupt: {exc})") from exc
    if meta.get("format") != FORMAT:
        raise ArtifactError(f"{p}: not a Huoyan model (format {meta.get('format')!r})")
    return meta.get("kind") or LEGACY_KIND  # written before kinds were recorded: PatchCore


def read_envelope(path: str | Path, kind: str) -> tuple[Path, dict[str, np.ndarray], ModelCard, dict[str, Any]]:
    """Read and verify the envelope of a ``kind`` model file (its card's digest)."""
    p = _existing(path)
    try:
        meta = read_metadata(p)
        tensors = load_file(str(p))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{p}: not a readable model file (truncated or corrupt: {exc})") from exc
    if meta.get("format") != FORMAT:
        raise ArtifactError(f"{p}: not a Huoyan model (format {meta.get('format')!r})")
    if meta.get("kind", LEGACY_KIND) != kind:
        raise ArtifactError(f"{p}: a {meta['kind']!r} model, not a {kind!r} model")
    try:
        version = int(meta.get("format_version", ""))
    except ValueError as exc:
        raise ArtifactError(f"{p}: unreadable format version") from exc
    if version > FORMAT_VERSION:
        raise ArtifactError(
            f"{p}: made by a newer Huoyan (model format {version}, this one reads up to {FORMAT_VERSION})"
        )
    card_json = meta.get("card", "")
    if sha256(card_json.encode()) != meta.get("card_sha256"):
        raise ArtifactError(f"{p}: model card does not match its checksum (file was modified)")
    try:
        card = ModelCard.model_validate_json(card_json)
        params = json.loads(meta.get("params", ""))
    except (ValidationError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{p}: invalid model card or parameters: {exc}") from exc
    return p, tensors, card, params


def read_artifact(path: str | Path, kind: str) -> tuple[dict[str, np.ndarray], ModelCard, dict[str, Any]]:
    """A ``kind`` model file written by ``write_artifact``, verified: the card's digest,
    and exactly the tensors its card lists, each matching its digest."""
    p, tensors, card, params = read_envelope(path, kind)
    digests = card.details.get(TENSOR_DIGESTS)
    if not isinstance(digests, dict) or set(digests) != set(tensors):
        raise ArtifactError(f"{p}: the file's tensors {sorted(tensors)} are not those its card lists")
    for name, tensor in tensors.items():
        if sha256(np.ascontiguousarray(tensor).tobytes()) != digests[name]:
            raise ArtifactError(f"{p}: tensor {name!r} does not match its checksum (file was modified)")
    return tensors, card, params
