"""A plant's signing keys and the trust store of other plants' public keys.

Signing keys are ECDSA P-256 (``cryptography``): the curve the OpenSSF ``model_signing``
tool verifies, so a package a plant signs can be checked with that tool as well as with
Huoyan. Each plant also has an X25519 key that packages sealed for it are encrypted to
(``<name>.box.key``, ``<name>.box.pub``). Private keys are PEM (PKCS#8), encrypted with a
passphrase taken from an environment variable when one is named, and written readable by
their owner only.

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
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
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


def _write_pair(private: Path, public: Path, key: ec.EllipticCurvePrivateKey | x25519.X25519PrivateKey,
                passphrase: bytes | None) -> None:  # fmt: skip
    encryption = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def new_keypair(name: str, folder: Path, passphrase: bytes | None) -> tuple[Path, Path]:
    """``<name>.key`` (private, 0600) and ``<name>.pub`` for signing, and ``<name>.box.key`` and
    ``<name>.box.pub`` for receiving sealed packages, in ``folder``; never overwrites."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}{suffix}" for suffix in (".key", ".pub", ".box.key", ".box.pub")]
    if any(p.exists() for p in paths):
        raise KeyError_(f"keys named {name} exist already in {folder}; keys are never overwritten")
    _write_pair(paths[0], paths[1], ec.generate_private_key(ec.SECP256R1()), passphrase)
    _write_pair(paths[2], paths[3], x25519.X25519PrivateKey.generate(), passphrase)
    return paths[0], paths[1]


def _private(path: Path, passphrase: bytes | None) -> Any:
    try:
        return serialization.load_pem_private_key(path.read_bytes(), passphrase)
    except (ValueError, TypeError, OSError) as exc:
        raise KeyError_(f"{path}: not a readable private key ({exc})") from exc


def box_private(path: Path, passphrase: bytes | None) -> x25519.X25519PrivateKey:
    key = _private(path, passphrase)
    if not isinstance(key, x25519.X25519PrivateKey):
        raise KeyError_(f"{path}: an X25519 key (<name>.box.key) is needed")
    return key


def signing_key(private: Path, passphrase: bytes | None) -> ec.EllipticCurvePrivateKey:
    key = _private(private, passphrase)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise KeyError_(f"{private}: an ECDSA P-256 key is needed")
    return key


def public_of(private: Path, passphrase: bytes | None) -> bytes:
    key = signing_key(private, passphrase)
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


class TrustedKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    fingerprint: str
    public_key: str = Field(description="PEM")
    roles: list[Role]
    box_key: str | None = Field(default=None, description="PEM of the X25519 key sealed packages are encrypted to")
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

    def trust(self, name: str, public_pem: bytes, roles: list[Role], box_pem: bytes | None = None) -> TrustedKey:
        """Add (or replace, by name) a key with its roles, and the key to seal packages for it."""
        try:
            key_print = fingerprint(public_pem)
            if box_pem is not None:
                fingerprint(box_pem)
        except ValueError as exc:
            raise KeyError_(f"not a PEM public key: {exc}") from exc
        entry = TrustedKey(
            name=name,
            fingerprint=key_print,
            public_key=public_pem.decode(),
            roles=roles,
            box_key=box_pem.decode() if box_pem else None,
            added_at=datetime.now(UTC),
        )
        self.keys = [k for k in self.keys if k.name != name and k.fingerprint != key_print] + [entry]
        return entry

    def find(self, fingerprint_: str) -> TrustedKey | None:
        return next((k for k in self.keys if k.fingerprint == fingerprint_), None)

    def named(self, name: str) -> TrustedKey | None:
        return next((k for k in self.keys if k.name == name), None)
