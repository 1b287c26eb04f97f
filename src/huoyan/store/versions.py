"""Model versions per station, with lineage, and the training jobs that make new ones.

A station's first version is the model its recipe names (registered when the station
is first hosted). Each retrained version records its parent and the images it was
trained on (inspection ids and image sha256s), so any version can be traced back to
the parts behind it. Exactly one version per station is active.

A version is its content: the artifact is kept in the blob store under its sha256
(``artifact_of``), so activating or rolling back never depends on a file path still
holding what it held when the version was made.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.orm import Session, selectinload

from huoyan.core.records import utcnow
from huoyan.core.station import ModelVersionRef
from huoyan.store.blobs import BlobStore, file_sha256
from huoyan.store.records import as_utc, model_pk
from huoyan.store.schema import ModelRow, ModelVersionRow, ThresholdOverrideRow, TrainingJobRow


class VersionStatus(StrEnum):
    CANDIDATE = "candidate"
    ACTIVE = "active"
    RETIRED = "retired"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


def _ts(value: Any) -> Any:
    return None if value is None else as_utc(value)


def version_dict(v: ModelVersionRow) -> dict[str, Any]:
    return {
        "id": v.id,
        "station_id": v.station_id,
        "version": v.version,
        "status": v.status,
        "parent_id": v.parent_id,
        "model_sha256": v.model.sha256,
        "model_name": v.model.name,
        "path": v.path,
        "card": v.model.card,
        "trained_on": v.trained_on,
        "metrics": v.metrics,
        "created_by": v.created_by,
        "created_at": as_utc(v.created_at),
        "activated_at": _ts(v.activated_at),
    }


def version_ref(version: dict[str, Any]) -> ModelVersionRef:
    return ModelVersionRef(version=version["version"], sha256=version["model_sha256"])


def artifact_of(version: dict[str, Any], artifacts: BlobStore) -> Path:
    """The version's model file in the blob store. A version made before the store kept
    models is taken in from the path it was registered with, if that file still holds it;
    raises ``FileNotFoundError`` if neither does."""
    sha = version["model_sha256"]
    if artifacts.has(sha):
        return artifacts.path(sha)
    registered = Path(version["path"])
    if registered.is_file() and file_sha256(registered) == sha:
        artifacts.put_file(registered, sha)
        return artifacts.path(sha)
    raise FileNotFoundError(
        f"model version {version['version']} ({sha[:12]}) is not in the model store, "
        f"and {registered} no longer holds it"
    )


def job_dict(j: TrainingJobRow) -> dict[str, Any]:
    return {
        "id": j.id,
        "station_id": j.station_id,
        "status": j.status,
        "params": j.params,
        "requested_by": j.requested_by,
        "created_at": as_utc(j.created_at),
        "started_at": _ts(j.started_at),
        "finished_at": _ts(j.finished_at),
        "message": j.message,
        "version_id": j.version_id,
    }


class ModelVersions:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(
        self,
        station_id: str,
        model_sha256: str,
        name: str,
        card: dict[str, Any],
        path: str,
        created_by: str,
        parent_id: int | None = None,
        trained_on: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        status: VersionStatus = VersionStatus.CANDIDATE,
    ) -> dict[str, Any]:
        with Session(self.engine) as s, s.begin():
            last = s.scalar(select(func.max(ModelVersionRow.version)).where(ModelVersionRow.station_id == station_id))
            row = ModelVersionRow(
                station_id=station_id,
                version=(last or 0) + 1,
                model_pk=model_pk(s, model_sha256, name, card),
                path=path,
                parent_id=parent_id,
                status=status.value,
                trained_on=trained_on or {},
                metrics=metrics or {},
                created_by=created_by,
                created_at=utcnow(),
                activated_at=utcnow() if status == VersionStatus.ACTIVE else None,
            )
            s.add(row)
            s.flush()
            s.refresh(row, ["model"])
            return version_dict(row)

    def ensure_initial(
        self, station_id: str, model_sha256: str, name: str, card: dict[str, Any], path: str
    ) -> dict[str, Any]:
        """The active version, after registering the recipe's own model as version 1 if the
        station has none yet."""
        current = self.active(station_id)
        if current is not None:
            return current
        trained_on = {
            "source": "huoyan fit",
            "images": card.get("train_samples", card.get("train_images")),  # first-release cards: train_images
            "content_sha256": card.get("train_content_sha256"),
        }
        return self.add(
            station_id, model_sha256, name, card, path, "recipe", trained_on=trained_on, status=VersionStatus.ACTIVE
        )

    def _select(self) -> Any:
        return select(ModelVersionRow).options(selectinload(ModelVersionRow.model))

    def for_station(self, station_id: str | None = None) -> list[dict[str, Any]]:
        stmt = self._select().order_by(ModelVersionRow.station_id, ModelVersionRow.version.desc())
        if station_id:
            stmt = stmt.where(ModelVersionRow.station_id == station_id)
        with Session(self.engine) as s:
            return [version_dict(v) for v in s.scalars(stmt)]

    def get(self, version_id: int) -> dict[str, Any] | None:
        with Session(self.engine) as s:
            row = s.scalar(self._select().where(ModelVersionRow.id == version_id))
            return None if row is None else version_dict(row)

    def number_of(self, station_id: str, model_sha256: str) -> int | None:
        """The station's version number of the model with this sha256, if it has one."""
        stmt = (
            select(ModelVersionRow.version)
            .join(ModelRow, ModelRow.id == ModelVersionRow.model_pk)
            .where(ModelVersionRow.station_id == station_id, ModelRow.sha256 == model_sha256)
            .order_by(ModelVersionRow.version)
            .limit(1)
        )
        with Session(self.engine) as s:
            return s.scalar(stmt)

    def active(self, station_id: str) -> dict[str, Any] | None:
        stmt = self._select().where(
            ModelVersionRow.station_id == station_id, ModelVersionRow.status == VersionStatus.ACTIVE.value
        )
        with Session(self.engine) as s:
            row = s.scalar(stmt)
            return None if row is None else version_dict(row)

    def set_metrics(self, version_id: int, metrics: dict[str, Any]) -> None:
        with Session(self.engine) as s, s.begin():
            s.execute(update(ModelVersionRow).where(ModelVersionRow.id == version_id).values(metrics=metrics))

    def mark_active(self, version_id: int) -> None:
        """Make this version the station's active one; the one before is retired."""
        with Session(self.engine) as s, s.begin():
            row = s.get(ModelVersionRow, version_id)
            if row is None:
                raise LookupError(f"no model version {version_id}")
            s.execute(
                update(ModelVersionRow)
                .where(
                    ModelVersionRow.station_id == row.station_id,
                    ModelVersionRow.status == VersionStatus.ACTIVE.value,
                )
                .values(status=VersionStatus.RETIRED.value)
            )
            row.status = VersionStatus.ACTIVE.value
            row.activated_at = utcnow()

    # -- thresholds set on the line ---------------------------------------------------
    def threshold_override(self, station_id: str) -> dict[str, Any] | None:
        with Session(self.engine) as s:
            row = s.get(ThresholdOverrideRow, station_id)
            if row is None:
                return None
            return {
                "recipe_id": row.recipe_id,
                "base_version": row.base_version,
                "model_sha256": row.model_sha256,
                "threshold": row.threshold,
                "set_by": row.set_by,
                "set_at": as_utc(row.set_at),
            }

    def set_threshold_override(
        self, station_id: str, recipe_id: str, base_version: str, model_sha256: str, threshold: float, by: str
    ) -> None:
        """Keep the threshold set on a station, for this recipe version and model."""
        with Session(self.engine) as s, s.begin():
            row = s.get(ThresholdOverrideRow, station_id)
            if row is None:
                row = ThresholdOverrideRow(station_id=station_id)
                s.add(row)
            row.recipe_id, row.base_version, row.model_sha256 = recipe_id, base_version, model_sha256
            row.threshold, row.set_by, row.set_at = threshold, by, utcnow()

    def clear_threshold_override(self, station_id: str) -> None:
        with Session(self.engine) as s, s.begin():
            s.execute(delete(ThresholdOverrideRow).where(ThresholdOverrideRow.station_id == station_id))

    # -- training jobs ------------------------------------------------------------------
    def enqueue(self, station_id: str, params: dict[str, Any], requested_by: str) -> dict[str, Any]:
        with Session(self.engine) as s, s.begin():
            row = TrainingJobRow(
                station_id=station_id,
                status=JobStatus.QUEUED.value,
                params=params,
                requested_by=requested_by,
                created_at=utcnow(),
            )
            s.add(row)
            s.flush()
            return job_dict(row)

    def claim(self, station_ids: list[str]) -> dict[str, Any] | None:
        """The oldest queued job for one of these stations, now marked running."""
        with Session(self.engine) as s, s.begin():
            row = s.scalar(
                select(TrainingJobRow)
                .where(TrainingJobRow.status == JobStatus.QUEUED.value, TrainingJobRow.station_id.in_(station_ids))
                .order_by(TrainingJobRow.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if row is None:
                return None
            row.status, row.started_at = JobStatus.RUNNING.value, utcnow()
            return job_dict(row)

    def progress(self, job_id: int, message: str) -> None:
        with Session(self.engine) as s, s.begin():
            s.execute(update(TrainingJobRow).where(TrainingJobRow.id == job_id).values(message=message))

    def finish(self, job_id: int, status: JobStatus, message: str, version_id: int | None = None) -> None:
        with Session(self.engine) as s, s.begin():
            s.execute(
                update(TrainingJobRow)
                .where(TrainingJobRow.id == job_id)
                .values(status=status.value, message=message, version_id=version_id, finished_at=utcnow())
            )

    def fail_interrupted(self) -> int:
        """Jobs left running by a server that stopped: failed, so they can be asked for again."""
        with Session(self.engine) as s, s.begin():
            result = s.execute(
                update(TrainingJobRow)
                .where(TrainingJobRow.status == JobStatus.RUNNING.value)
                .values(status=JobStatus.FAILED.value, message="interrupted by a server restart", finished_at=utcnow())
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def jobs(self, station_id: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        stmt = select(TrainingJobRow).order_by(TrainingJobRow.id.desc()).limit(limit)
        if station_id:
            stmt = stmt.where(TrainingJobRow.station_id == station_id)
        with Session(self.engine) as s:
            return [job_dict(j) for j in s.scalars(stmt)]

    def job(self, job_id: int) -> dict[str, Any] | None:
        with Session(self.engine) as s:
            row = s.get(TrainingJobRow, job_id)
            return None if row is None else job_dict(row)
