"""Signed checkpoints: the heads of the audit trail and of every station's record and
review chains, signed with the plant's ECDSA P-256 key.

The chains' own checkpoints are entries of the audit trail, MACed with the audit key that
every host writing records must hold. Whoever holds a server and its audit key could
rewrite a chain, its checkpoints and the trail together and leave them consistent. A
signed checkpoint is made with the plant's signing key, kept off the servers behind a
passphrase, and handed to whoever must be able to check later (the quality department,
an auditor, a customer): ``huoyan audit verify --checkpoint F --public-key plant.pub``
then proves that every chain still passes through the heads signed in F, so an edit, a
removal or a rewrite since is found even by someone who does not trust the database's
keeper. A checkpoint is made only of chains that verify (``huoyan audit checkpoint``).

The file is JSON: ``{"statement": "<the checkpoint as JSON text>", "signature": "<base64
ECDSA-SHA256 over that text>"}``, so the signed bytes are exactly the ones stored.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import Engine

from huoyan.share.keys import fingerprint, signing_key
from huoyan.store.audit import AuditLog
from huoyan.store.verification import Marks, Verification, verify_all

FORMAT = "huoyan.checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be made (the chains do not verify) or read (not signed by
    the key given, not a checkpoint)."""


class Head(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pos: int
    sha256: str


class Checkpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: str = FORMAT
    at: datetime
    signer: str  # the signing key's fingerprint
    audit: Head  # entries in the trail, the newest one's hash
    records: dict[str, Head]  # station -> its record chain's head
    reviews: dict[str, Head]  # station -> its review chain's head

    def marks(self) -> Marks:
        """What ``verify_all`` checks the chains against."""
        return Marks(
            audit=[(self.audit.pos, self.audit.sha256)],
            records={s: [(h.pos, h.sha256)] for s, h in self.records.items()},
            reviews={s: [(h.pos, h.sha256)] for s, h in self.reviews.items()},
        )


def make_checkpoint(engine: Engine, audit: AuditLog, private_key: Path, passphrase: bytes | None) -> dict[str, Any]:
    """Verify everything, then sign the heads; the checkpoint file's content."""
    key = signing_key(private_key, passphrase)
    found = verify_all(engine, audit)
    if not found.intact:
        raise CheckpointError(f"nothing signed: the chains do not verify ({_first_problem(found)})")
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    checkpoint = Checkpoint(
        at=datetime.now(UTC),
        signer=fingerprint(public),
        audit=Head(pos=found.audit.entries, sha256=found.audit.head_sha256),
        records={r.station_id: Head(pos=r.head_pos, sha256=r.head_sha256) for r in found.records if r.head_pos},
        reviews={r.station_id: Head(pos=r.head_pos, sha256=r.head_sha256) for r in found.reviews if r.head_pos},
    )
    statement = checkpoint.model_dump_json(indent=2)
    signature = key.sign(statement.encode(), ec.ECDSA(hashes.SHA256()))
    return {"statement": statement, "signature": base64.b64encode(signature).decode()}


def read_checkpoint(path: Path, public_pem: bytes) -> Checkpoint:
    """The checkpoint in ``path``, after its signature verifies with ``public_pem``."""
    try:
        envelope = json.loads(path.read_text())
        statement, signature = str(envelope["statement"]), base64.b64decode(envelope["signature"])
        public = serialization.load_pem_public_key(public_pem)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: not a signed checkpoint, or the public key is unreadable ({exc})") from exc
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise CheckpointError("the public key is not an ECDSA key")
    try:
        public.verify(signature, statement.encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise CheckpointError(f"{path}: the signature does not verify with this public key") from exc
    try:
        return Checkpoint.model_validate_json(statement)
    except ValidationError as exc:
        raise CheckpointError(f"{path}: signed, but not a checkpoint of this format ({exc})") from exc


def _first_problem(found: Verification) -> str:
    if not found.audit.intact:
        return f"audit trail: {found.audit.problem}"
    bad = next(r for r in [*found.records, *found.reviews] if not r.intact)
    return f"station {bad.station_id}: {bad.problems[0]}"
