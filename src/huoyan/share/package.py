"""Signed packages that move a proven inspection from one plant to another.

A package is a folder::

    <package>/
        content/            what is signed
            manifest.json   name, version, publisher, key, expiry, software, lineage, every file's sha256
            model/...       the model artifact (and its model card)
            recipe/...      the recipe
        content.sig         a Sigstore bundle made by the OpenSSF model_signing library (ECDSA P-256)

so ``model_signing verify key --signature <package>/content.sig --public_key plant-a.pub
<package>/content`` checks it without Huoyan. Import verifies everything before anything
is installed: the manifest names a key of the trust store that holds the
``publish-models`` role, the signature verifies with that key over every file (a changed
byte, a renamed, added or removed file, an edited manifest all fail), the manifest lists
exactly the files present, the package has not expired, and its version is newer than
the last one installed from the same publisher under the same name (no replay of an
older signed model). A refused package installs nothing; ``PackageRefused`` says why.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from huoyan import __version__
from huoyan.core.artifact import ArtifactError, read_metadata
from huoyan.share.keys import Role, TrustStore, fingerprint, public_of

FORMAT = "huoyan.package/1"
CONTENT = "content"
SIGNATURE = "content.sig"
MANIFEST = "manifest.json"


class PackageRefused(Exception):
    """The package was not installed; the message says exactly why."""


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: str = FORMAT
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    version: int = Field(ge=1, description="increases with every package of this name from this publisher")
    publisher: str
    key_fingerprint: str
    created_at: datetime
    expires_at: datetime
    exported_by: str
    software: str
    lineage: dict[str, Any] = Field(default_factory=dict, description="the model card: training data, parameters")
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
    model: Path,
    recipe: Path | None,
    exported_by: str,
    valid_days: int = 365,
) -> Manifest:
    """Bundle and sign; ``out`` must not exist."""
    import model_signing

    if out.exists():
        raise FileExistsError(f"{out} exists already")
    public = public_of(private_key, passphrase)
    try:  # the model card, kept in the artifact: what trained it, on what data
        lineage = json.loads(read_metadata(model)["card"])
    except (ArtifactError, OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{model}: not a Huoyan model artifact ({exc})") from exc
    content = out / CONTENT
    (content / "model").mkdir(parents=True)
    shutil.copy2(model, content / "model" / model.name)
    if recipe is not None:
        (content / "recipe").mkdir()
        shutil.copy2(recipe, content / "recipe" / recipe.name)
    now = datetime.now(UTC).replace(microsecond=0)
    manifest = Manifest(
        name=name,
        version=version,
        publisher=publisher,
        key_fingerprint=fingerprint(public),
        created_at=now,
        expires_at=now + timedelta(days=valid_days),
        exported_by=exported_by,
        software=f"huoyan {__version__}",
        lineage=lineage,
        files=_files(content),
    )
    (content / MANIFEST).write_text(manifest.model_dump_json(indent=2))
    # model_signing annotates the password as str but hands it to cryptography, which takes bytes.
    config = model_signing.signing.Config().use_elliptic_key_signer(
        private_key=private_key,
        password=passphrase,  # type: ignore[arg-type]
    )
    config.sign(content, out / SIGNATURE)
    return manifest


def verify_package(package: Path, trust: TrustStore, now: datetime | None = None) -> Manifest:
    """Everything checked, nothing changed. Raises ``PackageRefused``."""
    import model_signing

    content, signature = package / CONTENT, package / SIGNATURE
    if not (content / MANIFEST).is_file() or not signature.is_file():
        raise PackageRefused(f"{package} is not a package: {CONTENT}/{MANIFEST} or {SIGNATURE} is missing")
    try:
        manifest = Manifest.model_validate_json((content / MANIFEST).read_text())
    except (ValidationError, ValueError) as exc:
        raise PackageRefused(f"the manifest is unreadable: {exc}") from exc
    signer = trust.find(manifest.key_fingerprint)
    if signer is None:
        raise PackageRefused(f"unknown signer: key {manifest.key_fingerprint[:16]}… is not in the trust store")
    if Role.PUBLISH_MODELS not in signer.roles:
        raise PackageRefused(f"signer {signer.name} is trusted but may not publish models")
    with tempfile.TemporaryDirectory() as tmp:
        public = Path(tmp) / "signer.pub"
        public.write_text(signer.public_key)
        try:
            model_signing.verifying.Config().use_elliptic_key_verifier(public_key=public).verify(content, signature)
        except Exception as exc:  # the library raises ValueError and others; each means "does not verify"
            raise PackageRefused(f"the signature of {signer.name} does not verify: {exc}") from exc
    present = _files(content)
    if present != manifest.files:
        extra = sorted(set(present) - set(manifest.files))
        missing = sorted(set(manifest.files) - set(present))
        raise PackageRefused(f"the files differ from the manifest: extra {extra}, missing {missing}")
    if manifest.publisher != signer.name:
        raise PackageRefused(f"the manifest names publisher {manifest.publisher}, the key is {signer.name}'s")
    moment = now or datetime.now(UTC)
    if moment >= manifest.expires_at:
        raise PackageRefused(f"the package expired on {manifest.expires_at.isoformat()}")
    return manifest


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


def import_package(package: Path, trust: TrustStore, into: Path, now: datetime | None = None) -> Path:
    """Verify, refuse a replay, then copy the content to ``into/<publisher>/<name>/<version>``."""
    manifest = verify_package(package, trust, now)
    registry_path = into / "installed.json"
    registry = Installed.load(registry_path)
    key = f"{manifest.publisher}/{manifest.name}"
    newest = registry.versions.get(key, 0)
    if manifest.version <= newest:
        raise PackageRefused(
            f"version {manifest.version} of {key} is not newer than version {newest}, installed already"
        )
    target = into / manifest.publisher / manifest.name / str(manifest.version)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(package / CONTENT, staging)
    staging.replace(target)
    registry.versions[key] = manifest.version
    registry.save(registry_path)
    return target
