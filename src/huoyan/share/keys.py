"""A plant's signing keys and the trust store of other plants' public keys.

Keys are ECDSA P-256 (``cryptography``): the curve the OpenSSF ``model_signing`` tool
verifies, so a package a plant signs can be checked with that tool as well as with
Huoyan. The private key is PEM (PKCS#8), encrypted with a passphrase taken from an
environment variable when one is named, and written readable by its owner only.

The trust store is a JSON file of named public keys, each with the roles its holder is
trusted for: ``publish-models`` (packages with models and recipes a plant may install)
and ``receive-data`` (a supplier or plant records may be exported to). A key is known by
its fingerprint: the SHA-256 of its DER SubjectPublicKeyInfo.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict, Field


class Role(StrEnum):
    PUBLISH_MODELS = "publish-models"
    RECEIVE_DATA = "receive-data"


class KeyError_(ValueError):
    """A key or trust-store problem, said plainly (a missing passphrase, a malformed key)."""


def fingerprint(public_pem: bytes) -> str:
    key = serialization.load_pem_public_key(public_pem)
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def passphrase_from(env: str | None) -> bytes | None:
    if env is None:
        return None
    value = os.environ.get(env)
    if not value:
        raise KeyError_(f"environment variable {env} (the key's passphrase) is not set")
    return value.encode()


def new_keypair(name: str, folder: Path, passphrase: bytes | None) -> tuple[Path, Path]:
    """``<name>.key`` (private, 0600) and ``<name>.pub`` in ``folder``; refuses to overwrite."""
    folder.mkdir(parents=True, exist_ok=True)
    private, public = folder / f"{name}.key", folder / f"{name}.pub"
    if private.exists() or public.exists():
        raise KeyError_(f"{private} or {public} exists already; keys are never overwritten")
    key = ec.generate_private_key(ec.SECP256R1())
    encryption = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public


def public_of(private: Path, passphrase: bytes | None) -> bytes:
    try:
        key = serialization.load_pem_private_key(private.read_bytes(), passphrase)
    except (ValueError, TypeError) as exc:
        raise KeyError_(f"{private}: not a readable private key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise KeyError_(f"{private}: an ECDSA P-256 key is needed")
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


class TrustedKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    fingerprint: str
    public_key: str = Field(description="PEM")
    roles: list[Role]
    added_at: datetime


class TrustStore(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[TrustedKey] = Field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> TrustStore:
        if not path.exists():
            return cls()
        try:
            return cls.model_validate(json.loads(path.read_text()))
        except ValueError as exc:
            raise KeyError_(f"{path}: not a trust store ({exc})") from exc

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.model_dump_json(indent=2))
        os.replace(tmp, path)

    def trust(self, name: str, public_pem: bytes, roles: list[Role]) -> TrustedKey:
        """Add (or replace, by name) a key with its roles."""
        try:
            print_ = fingerprint(public_pem)
        except ValueError as exc:
            raise KeyError_(f"not a PEM public key: {exc}") from exc
        entry = TrustedKey(
            name=name, fingerprint=print_, public_key=public_pem.decode(), roles=roles, added_at=datetime.now(UTC)
        )
        self.keys = [k for k in self.keys if k.name != name and k.fingerprint != print_] + [entry]
        return entry

    def find(self, fingerprint_: str) -> TrustedKey | None:
        return next((k for k in self.keys if k.fingerprint == fingerprint_), None)
