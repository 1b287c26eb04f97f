"""Signed packages from other plants, imported from the dashboard: engineers only.

The package arrives as one file (a tar, gzip'd or not, or a zip of the package folder),
streamed to disk as the raw request body, never held in memory. It is verified exactly
as ``huoyan pkg import`` verifies it (``huoyan.share.package``) against this server's
trust store (``<data_dir>/trust.json``) and opened, if sealed, with the box key named by
``huoyan serve --box-key``. A refused package installs nothing; every import and refusal
goes to the audit trail. A model it carries can become a candidate version of a hosted
station in the same step, to be compared and activated like a trained one, and the
frozen SPC control limits it carries frozen for that station.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from starlette.concurrency import run_in_threadpool

from huoyan.core.artifact import read_metadata
from huoyan.core.text import Message
from huoyan.server.platform import Platform, platform
from huoyan.server.routes.common import errors, not_found, said
from huoyan.server.schemas import ModelVersionOut, PackageImported, PackageOut
from huoyan.server.security import Engineer
from huoyan.server.uploads import receive_file
from huoyan.share.keys import KeyError_, TrustStore, box_private, passphrase_from
from huoyan.share.limits import freeze_carried
from huoyan.share.package import (
    MANIFEST,
    Manifest,
    PackageRefused,
    import_audited,
    installed_packages,
    unpack_archive,
)

router = APIRouter(prefix="/api", tags=["packages"])

MAX_PACKAGE = 2 * 1024**3  # bytes of an uploaded package archive
BOX_KEY_PASSPHRASE = "HUOYAN_BOX_KEY_PASSPHRASE"
TRUST_FILE = "trust.json"
PACKAGES = "packages"


def _out(manifest: Manifest) -> PackageOut:
    return PackageOut.model_validate({**manifest.model_dump(exclude={"files"}), "files": len(manifest.files)})


@router.get("/packages", response_model=list[PackageOut], responses=errors())
def packages(p: Annotated[Platform, Depends(platform)], _: Engineer) -> list[PackageOut]:
    """The packages installed on this server: the newest version from each publisher and name."""
    return [_out(m) for m in installed_packages(p.settings.data_dir / PACKAGES)]


def _install(p: Platform, archive: Path, work: Path, who: str, source: str) -> Path:
    try:
        folder = unpack_archive(archive, work / "unpacked", MAX_PACKAGE * 2)
    except PackageRefused as exc:
        p.audit.add(who, "package-refused", source, outcome="refused", reason=str(exc))
        raise
    box_key = p.settings.box_key
    # The passphrase only if one is set: a box key may be stored unencrypted on a locked-down server.
    passphrase = passphrase_from(BOX_KEY_PASSPHRASE) if os.environ.get(BOX_KEY_PASSPHRASE) else None
    box = box_private(box_key, passphrase) if box_key else None
    trust = TrustStore.load(p.settings.data_dir / TRUST_FILE)
    return import_audited(folder, trust, p.settings.data_dir / PACKAGES, p.audit, who, source, box)


def _candidate(p: Platform, target: Path, manifest: Manifest, station: str, who: str) -> dict[str, Any]:
    models = sorted((target / "model").glob("*.safetensors")) if (target / "model").is_dir() else []
    if not models:
        raise HTTPException(
            409,
            Message(
                "installed, but {name} v{version} carries no model for {station}",
                name=manifest.name,
                version=manifest.version,
                station=station,
            ),
        )
    model = models[0]
    sha = p.blobs.put_file(model)
    return p.versions.add(
        station,
        sha,
        model.name,
        json.loads(read_metadata(model)["card"]),
        str(model.resolve()),
        created_by=who,
        trained_on={
            "source": "package",
            "publisher": manifest.publisher,
            "package": manifest.name,
            "package_version": manifest.version,
            "exported_by": manifest.exported_by,
        },
    )


@router.post(
    "/packages",
    response_model=PackageImported,
    status_code=201,
    responses=errors(404, 409, 413, 422, 507),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                t: {"schema": {"type": "string", "format": "binary"}}
                for t in ("application/x-tar", "application/gzip", "application/zip")
            },
        }
    },
)
async def import_(
    request: Request,
    p: Annotated[Platform, Depends(platform)],
    principal: Engineer,
    station: Annotated[
        str | None, Query(description="make the package's model a candidate version of this hosted station")
    ] = None,
) -> PackageImported:
    """Verify a package (the request body: a tar or zip of its folder) and install it; a
    refused package (422) changes nothing and says exactly why."""
    who = principal.user.username
    if station is not None and station not in p.hosts:
        raise not_found(Message("station '{station}'", station=station))
    incoming = p.settings.data_dir / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=incoming) as tmp:
        archive = Path(tmp) / "package"
        size = await receive_file(request, archive, MAX_PACKAGE)
        try:
            target = await run_in_threadpool(_install, p, archive, Path(tmp), who, f"upload of {size} bytes")
        except PackageRefused as exc:
            raise HTTPException(422, Message("refused: {reason}", reason=said(exc))) from exc
        except KeyError_ as exc:  # this server's box key: its file or passphrase
            raise HTTPException(
                409, Message("this server cannot open sealed packages: {reason}", reason=str(exc))
            ) from exc
        except OSError as exc:  # verified, but it could not be copied in (a full disk)
            raise HTTPException(507, Message("not installed: {reason}", reason=str(exc))) from exc
    manifest = Manifest.model_validate_json((target / MANIFEST).read_text())
    version, limits = None, []
    if station is not None:
        added = await run_in_threadpool(_candidate, p, target, manifest, station, who)
        p.audit.add(who, "model-version-add", station, version=added["version"], package=manifest.name)
        version = ModelVersionOut.model_validate(added)
        source = f"package {manifest.publisher}/{manifest.name} v{manifest.version}"
        limits = await run_in_threadpool(freeze_carried, p.engine, target, station, who, source)
        for frozen in limits:
            p.audit.add(who, "control-limits-frozen", station, **frozen, source=source)
    return PackageImported(
        package=_out(manifest), installed_in=str(target), model_version=version, control_limits=limits
    )
