"""Signed packages that move a proven inspection, or a selection of records, between plants.

A package is a folder::

    <package>/
        content/            what is signed
            manifest.json   name, version, publisher, key, expiry, software, lineage, records
                            carried (filter, redaction policy), every file's sha256
            model/...       the model artifact (and its model card), if any
            recipe/...      the recipe, if any
            spc/limits.json frozen control limits of the station it came from, if asked
            templates/...   the recipe's golden templates, if asked
            records/...     records, their reviews and images, redacted (huoyan.share.records)
        content.sig         a Sigstore bundle made by the OpenSSF model_signing library (ECDSA P-256)

so ``model_signing verify key --signature <package>/content.sig --public_key plant-a.pub
<package>/content`` checks it without Huoyan.

A package sealed for a receiving plant reveals nothing but its manifest::

    <package>/
        sealed/             what is signed: the plaintext manifest and the ciphertext
            manifest.json   a copy of the manifest
            envelope.json   recipient, its key's fingerprint, the ephemeral X25519 key, the nonce
            content.tar.enc content/ and content.sig as a tar, AES-256-GCM with a key agreed by
                            X25519 (the sender's ephemeral key, the recipient's box key) and
                            HKDF-SHA256; tarred and encrypted in one streaming pass
        sealed.sig          model_signing's bundle over sealed/

Only the recipient's box key opens it; the inner package is then verified as any other.
Records leave a plant only sealed, for a key trusted to receive data.

Import verifies everything before anything is installed: the manifest names a key of the
trust store (holding the ``publish-models`` role if the package carries a model), the
signature verifies with that key over every file (a changed byte, a renamed, added or
removed file, an edited manifest all fail), the manifest lists exactly the files present,
the package has not expired, and its version is newer than the last one installed from
the same publisher under the same name (no replay of an older signed model). A refused
package installs nothing; ``PackageRefused`` says why.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from huoyan import __version__
from huoyan.core.artifact import ArtifactError, read_metadata
from huoyan.core.text import Message
from huoyan.share.keys import Role, TrustedKey, TrustStore, fingerprint, public_of
from huoyan.share.records import FOLDER as RECORDS
from huoyan.share.records import RecordSelection, write_records
from huoyan.store.audit import AuditLog

FORMAT = "huoyan.package/1"
CONTENT = "content"
SIGNATURE = "content.sig"
MANIFEST = "manifest.json"
SEALED = "sealed"
SEALED_SIGNATURE = "sealed.sig"
ENVELOPE = "envelope.json"
NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
CIPHERTEXT = "content.tar.enc"
# Files carried beside the model: frozen control limits, the recipe's golden templates.
EXTRA = r"^(spc/[a-z0-9_-]{1,50}\.json|templates/(?!\.{1,2}$)[^/\\]{1,200})$"
TAG = 16  # bytes of AES-GCM's tag, after the ciphertext


class PackageRefused(Exception):
    """The package was not installed; the message says exactly why."""


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: str = FORMAT
    name: str = Field(pattern=NAME)
    version: int = Field(ge=1, description="increases with every package of this name from this publisher")
    publisher: str
    key_fingerprint: str
    created_at: datetime
    expires_at: datetime
    exported_by: str
    software: str
    lineage: dict[str, Any] = Field(default_factory=dict, description="the model card: training data, parameters")
    records: dict[str, Any] | None = Field(
        default=None, description="records carried: how many, the filter, whether images came, the redaction policy"
    )
    files: dict[str, str] = Field(description="path inside content/ -> sha256")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(content: Path) -> dict[str, str]:
    return {
        p.relative_to(content).as_posix(): _sha256(p)
        for p in sorted(content.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def export_package(
    out: Path,
    *,
    name: str,
    version: int,
    publisher: str,
    private_key: Path,
    passphrase: bytes | None,
    model: Path | None,
    recipe: Path | None,
    exported_by: str,
    valid_days: int = 365,
    seal_for: TrustedKey | None = None,
    records: RecordSelection | None = None,
    extras: Mapping[str, bytes | Path] | None = None,
) -> Manifest:
    """Bundle and sign (and seal for a recipient, when given); ``out`` must not exist.
    Records go only sealed, to a key trusted to receive data. ``extras`` are other files
    to carry (their content, or a file to copy), by their path inside the package
    (``spc/limits.json``, ``templates/<name>``)."""
    if out.exists():
        raise FileExistsError(f"{out} exists already")
    if not re.fullmatch(NAME, name) or version < 1:
        raise ValueError(
            f"package name {name!r} or version {version} is not valid (letters, digits, . _ -; version >= 1)"
        )
    if model is None and records is None:
        raise ValueError("a package carries a model, records, or both: name at least one")
    if (recipe is not None or extras) and model is None:
        raise ValueError("a recipe, control limits or templates travel with their model: name the model too")
    for path in extras or {}:
        if not re.fullmatch(EXTRA, path):
            raise ValueError(f"{path!r} is not a file a package carries beside the model")
    if records is not None and seal_for is None:
        raise ValueError("records leave the plant only sealed for a receiver trusted with data: name it (--for)")
    if seal_for is not None and (Role.RECEIVE_DATA not in seal_for.roles or not seal_for.box_key):
        raise ValueError(f"{seal_for.name} is not trusted to receive data, or has no box key in the trust store")
    plan = _Plan(name, version, publisher, exported_by, valid_days, model, recipe, records, dict(extras or {}))
    try:
        if seal_for is None:
            return _build(out, plan, private_key, passphrase)
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:  # beside out: the plaintext stays on this disk
            plain = Path(tmp) / "plain"
            manifest = _build(plain, plan, private_key, passphrase)
            _seal(plain, out, seal_for, private_key, passphrase)
        return manifest
    except BaseException:  # half a package is no package
        shutil.rmtree(out, ignore_errors=True)
        raise


@dataclass(frozen=True)
class _Plan:
    """What goes into a package, checked."""

    name: str
    version: int
    publisher: str
    exported_by: str
    valid_days: int
    model: Path | None
    recipe: Path | None
    records: RecordSelection | None
    extras: dict[str, bytes | Path]


def _lineage(model: Path) -> dict[str, Any]:
    """The model card kept in the artifact: what trained it, on what data."""
    try:
        return dict(json.loads(read_metadata(model)["card"]))
    except (ArtifactError, OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{model}: not a Huoyan model artifact ({exc})") from exc


def _build(out: Path, plan: _Plan, private_key: Path, passphrase: bytes | None) -> Manifest:
    """The plain signed package in ``out``."""
    lineage = _lineage(plan.model) if plan.model is not None else {}
    public = public_of(private_key, passphrase)
    content = out / CONTENT
    content.mkdir(parents=True)
    if plan.model is not None:
        (content / "model").mkdir()
        shutil.copy2(plan.model, content / "model" / plan.model.name)
    if plan.recipe is not None:
        (content / "recipe").mkdir()
        shutil.copy2(plan.recipe, content / "recipe" / plan.recipe.name)
    for path, data in plan.extras.items():
        (content / path).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, Path):
            shutil.copy2(data, content / path)
        else:
            (content / path).write_bytes(data)
    carried = None
    if plan.records is not None:
        count = write_records(plan.records, content / RECORDS)
        carried = {"count": count, **plan.records.describe()}
    now = datetime.now(UTC).replace(microsecond=0)
    manifest = Manifest(
        name=plan.name,
        version=plan.version,
        publisher=plan.publisher,
        key_fingerprint=fingerprint(public),
        created_at=now,
        expires_at=now + timedelta(days=plan.valid_days),
        exported_by=plan.exported_by,
        software=f"huoyan {__version__}",
        lineage=lineage,
        records=carried,
        files=_files(content),
    )
    (content / MANIFEST).write_text(manifest.model_dump_json(indent=2))
    _sign(content, out / SIGNATURE, private_key, passphrase)
    return manifest


def _sign(folder: Path, signature: Path, private_key: Path, passphrase: bytes | None) -> None:
    import model_signing

    # model_signing annotates the password as str but hands it to cryptography, which takes bytes.
    config = model_signing.signing.Config().use_elliptic_key_signer(
        private_key=private_key,
        password=passphrase,  # type: ignore[arg-type]
    )
    config.sign(folder, signature)


def _box_key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    info = FORMAT.encode() + ephemeral + recipient
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)


def _raw(key: x25519.X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class _Encrypting(io.RawIOBase):
    """A write-only file that encrypts what passes through it."""

    def __init__(self, f: BinaryIO, encryptor: Any) -> None:
        super().__init__()
        self.f, self.encryptor = f, encryptor

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.f.write(self.encryptor.update(data))
        return len(data)


def _decrypt(ciphertext: Path, key: bytes, nonce: bytes, aad: bytes, into: BinaryIO) -> None:
    """Decrypt to ``into``; raises InvalidTag (after the last byte) if anything was changed,
    so nothing decrypted may be used before this returns."""
    size = ciphertext.stat().st_size
    if size < TAG:
        raise InvalidTag()
    with ciphertext.open("rb") as f:
        f.seek(size - TAG)
        tag = f.read(TAG)
        f.seek(0)
        decryptor = Cipher(algorithms.AES(key), modes.GCM(nonce, tag)).decryptor()
        decryptor.authenticate_additional_data(aad)
        left = size - TAG
        while left:
            block = f.read(min(left, 1 << 20))
            left -= len(block)
            into.write(decryptor.update(block))
        into.write(decryptor.finalize())


def _seal(plain: Path, out: Path, recipient: TrustedKey, private_key: Path, passphrase: bytes | None) -> None:
    assert recipient.box_key is not None
    their = serialization.load_pem_public_key(recipient.box_key.encode())
    assert isinstance(their, x25519.X25519PublicKey)
    ephemeral = x25519.X25519PrivateKey.generate()
    key = _box_key(ephemeral.exchange(their), _raw(ephemeral.public_key()), _raw(their))
    manifest = (plain / CONTENT / MANIFEST).read_bytes()
    nonce = os.urandom(12)
    sealed = out / SEALED
    sealed.mkdir(parents=True)
    encryptor = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
    # The manifest is the associated data: the ciphertext opens only beside its own manifest.
    encryptor.authenticate_additional_data(manifest)
    # Tarred and encrypted in one streaming pass: a package of any size in constant memory.
    with (sealed / CIPHERTEXT).open("wb") as f:
        with tarfile.open(fileobj=_Encrypting(f, encryptor), mode="w|") as t:
            t.add(plain / CONTENT, arcname=CONTENT)
            t.add(plain / SIGNATURE, arcname=SIGNATURE)
        f.write(encryptor.finalize() + encryptor.tag)  # as AES-GCM lays it out: ciphertext, then tag
    (sealed / MANIFEST).write_bytes(manifest)
    envelope = {
        "recipient": recipient.name,
        "recipient_fingerprint": fingerprint(recipient.box_key.encode()),
        "ephemeral": base64.b64encode(_raw(ephemeral.public_key())).decode(),
        "nonce": base64.b64encode(nonce).decode(),
        "aead": "AES-256-GCM",
        "kdf": "X25519 + HKDF-SHA256",
    }
    (sealed / ENVELOPE).write_text(json.dumps(envelope, indent=2))
    _sign(sealed, out / SEALED_SIGNATURE, private_key, passphrase)


def _signed_manifest(folder: Path, signature: Path, trust: TrustStore) -> Manifest:
    """The manifest in ``folder``, after its signer is found trusted to publish and the
    signature verifies over every file of ``folder``."""
    import model_signing

    if not (folder / MANIFEST).is_file() or not signature.is_file():
        raise PackageRefused(
            Message(
                "not a package: {folder}/{manifest} or {signature} is missing",
                folder=folder.name,
                manifest=MANIFEST,
                signature=signature.name,
            )
        )
    try:
        manifest = Manifest.model_validate_json((folder / MANIFEST).read_text())
    except (ValidationError, ValueError) as exc:
        raise PackageRefused(Message("the manifest is unreadable: {reason}", reason=exc)) from exc
    signer = trust.find(manifest.key_fingerprint)
    if signer is None:
        raise PackageRefused(
            Message("unknown signer: key {key}… is not in the trust store", key=manifest.key_fingerprint[:16])
        )
    if Role.PUBLISH_MODELS not in signer.roles and any(f.startswith("model/") for f in manifest.files):
        raise PackageRefused(Message("signer {signer} is trusted but may not publish models", signer=signer.name))
    if manifest.publisher != signer.name:
        raise PackageRefused(
            Message(
                "the manifest names publisher {publisher}, the key is {signer}'s",
                publisher=manifest.publisher,
                signer=signer.name,
            )
        )
    with tempfile.TemporaryDirectory() as tmp:
        public = Path(tmp) / "signer.pub"
        public.write_text(signer.public_key)
        try:
            model_signing.verifying.Config().use_elliptic_key_verifier(public_key=public).verify(folder, signature)
        except Exception as exc:  # the library raises ValueError and others; each means "does not verify"
            raise PackageRefused(
                Message("the signature of {signer} does not verify: {reason}", signer=signer.name, reason=exc)
            ) from exc
    return manifest


def verify_package(package: Path, trust: TrustStore, now: datetime | None = None) -> Manifest:
    """Everything checked, nothing changed. Raises ``PackageRefused``."""
    content = package / CONTENT
    manifest = _signed_manifest(content, package / SIGNATURE, trust)
    present = _files(content)
    if present != manifest.files:
        extra = sorted(set(present) - set(manifest.files))
        missing = sorted(set(manifest.files) - set(present))
        raise PackageRefused(
            Message(
                "the files differ from the manifest: extra {extra}, missing {missing}", extra=extra, missing=missing
            )
        )
    moment = now or datetime.now(UTC)
    if moment >= manifest.expires_at:
        raise PackageRefused(Message("the package expired on {date}", date=manifest.expires_at.isoformat()))
    return manifest


def unseal(package: Path, trust: TrustStore, box_key: x25519.X25519PrivateKey | None, into: Path) -> Path:
    """Check the outer signature, decrypt with this plant's box key and unpack into ``into``;
    the inner package (returned) is then verified like any other."""
    sealed = package / SEALED
    outer = _signed_manifest(sealed, package / SEALED_SIGNATURE, trust)
    try:
        envelope = json.loads((sealed / ENVELOPE).read_text())
        ephemeral = x25519.X25519PublicKey.from_public_bytes(base64.b64decode(envelope["ephemeral"]))
        nonce = base64.b64decode(envelope["nonce"])
    except (OSError, ValueError, KeyError) as exc:
        raise PackageRefused(Message("the envelope is unreadable: {reason}", reason=exc)) from exc
    if box_key is None:
        raise PackageRefused(
            Message(
                "the package is sealed for {recipient}: give this plant's box key", recipient=envelope.get("recipient")
            )
        )
    mine = box_key.public_key()
    mine_pem = mine.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    if envelope.get("recipient_fingerprint") != fingerprint(mine_pem):
        raise PackageRefused(
            Message(
                "the package is sealed for {recipient}, not for this plant's key", recipient=envelope.get("recipient")
            )
        )
    key = _box_key(box_key.exchange(ephemeral), _raw(ephemeral), _raw(mine))
    into.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=into) as tar:
        try:
            _decrypt(sealed / CIPHERTEXT, key, nonce, (sealed / MANIFEST).read_bytes(), tar)
        except InvalidTag as exc:
            raise PackageRefused(
                Message("the package cannot be decrypted with this plant's box key, or was changed")
            ) from exc
        tar.seek(0)
        with tarfile.open(fileobj=tar) as t:
            t.extractall(into, filter="data")  # no absolute paths, no links out, no devices
    inner = Manifest.model_validate_json((into / CONTENT / MANIFEST).read_text())
    if inner != outer:
        raise PackageRefused(Message("the sealed content's manifest differs from the plaintext one"))
    return into


class Installed(BaseModel):
    """What was installed, per publisher and package name: the replay guard."""

    versions: dict[str, int] = Field(default_factory=dict, description="'publisher/name' -> newest version")

    @classmethod
    def load(cls, path: Path) -> Installed:
        return cls.model_validate_json(path.read_text()) if path.exists() else cls()

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.model_dump_json(indent=2))
        tmp.replace(path)


def import_package(
    package: Path,
    trust: TrustStore,
    into: Path,
    now: datetime | None = None,
    box_key: x25519.X25519PrivateKey | None = None,
) -> Path:
    """Verify (unsealing first, if sealed), refuse a replay, then copy the content to
    ``into/<publisher>/<name>/<version>``."""
    if (package / SEALED).is_dir():
        with tempfile.TemporaryDirectory() as tmp:
            return import_package(unseal(package, trust, box_key, Path(tmp)), trust, into, now)
    manifest = verify_package(package, trust, now)
    registry_path = into / "installed.json"
    registry = Installed.load(registry_path)
    key = f"{manifest.publisher}/{manifest.name}"
    newest = registry.versions.get(key, 0)
    if manifest.version <= newest:
        raise PackageRefused(
            Message(
                "version {version} of {name} is not newer than version {newest}, installed already",
                version=manifest.version, name=key, newest=newest,
            )
        )  # fmt: skip
    target = into / manifest.publisher / manifest.name / str(manifest.version)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(package / CONTENT, staging)
    staging.replace(target)
    registry.versions[key] = manifest.version
    registry.save(registry_path)
    return target


def unpack_archive(archive: Path, into: Path, max_bytes: int) -> Path:
    """A package uploaded as one file (a tar, gzip'd or not, or a zip of the package
    folder) unpacked into ``into``; the package's folder. Nothing lands outside ``into``
    (no absolute paths, no ``..``, no links), and an archive that would unpack to more
    than ``max_bytes`` is refused before anything is written."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                members = z.infolist()
                if sum(m.file_size for m in members) > max_bytes:
                    raise PackageRefused(Message("the archive unpacks to more than {mb} MB", mb=max_bytes >> 20))
                for m in members:
                    if m.filename.startswith(("/", "\\")) or ".." in PurePosixPath(m.filename.replace("\\", "/")).parts:
                        raise PackageRefused(
                            Message("the archive names a path outside the package: {path}", path=m.filename)
                        )
                z.extractall(into)
        else:
            with tarfile.open(archive) as t:
                if sum(m.size for m in t.getmembers()) > max_bytes:
                    raise PackageRefused(Message("the archive unpacks to more than {mb} MB", mb=max_bytes >> 20))
                t.extractall(into, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        if isinstance(exc, tarfile.FilterError):
            raise PackageRefused(Message("the archive names a path outside the package: {path}", path=exc)) from exc
        raise PackageRefused(Message("not a tar or zip archive of a package: {reason}", reason=exc)) from exc
    for folder in (into, *sorted(p for p in into.iterdir() if p.is_dir())):
        if ((folder / CONTENT).is_dir() and (folder / SIGNATURE).is_file()) or (
            (folder / SEALED).is_dir() and (folder / SEALED_SIGNATURE).is_file()
        ):
            return folder
    raise PackageRefused(
        Message(
            "the archive holds no package ({content}/ and {signature}, or {sealed}/ and {sealed_signature}, "
            "at its top or one folder down)",
            content=CONTENT, signature=SIGNATURE, sealed=SEALED, sealed_signature=SEALED_SIGNATURE,
        )
    )  # fmt: skip


def installed_packages(into: Path) -> list[Manifest]:
    """The manifests of the packages installed in ``into``, newest version of each first."""
    registry = Installed.load(into / "installed.json")
    found = []
    for key, version in sorted(registry.versions.items()):
        path = into / key / str(version) / MANIFEST
        if path.is_file():
            found.append(Manifest.model_validate_json(path.read_text()))
    return found


def import_audited(
    package: Path,
    trust: TrustStore,
    into: Path,
    audit: AuditLog,
    who: str,
    source: str,
    box_key: x25519.X25519PrivateKey | None = None,
) -> Path:
    """``import_package``, with the import or the refusal (and its reason) in the audit
    trail: what the CLI and the dashboard both do."""
    try:
        target = import_package(package, trust, into, box_key=box_key)
    except PackageRefused as exc:
        audit.add(who, "package-refused", source, outcome="refused", reason=str(exc))
        raise
    manifest = Manifest.model_validate_json((target / MANIFEST).read_text())
    audit.add(
        who, "package-imported", str(target), publisher=manifest.publisher, version=manifest.version, source=source
    )
    return target
