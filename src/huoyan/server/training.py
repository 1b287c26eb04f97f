"""Retraining from the line: queued jobs build a new model version from collected good images,
or add the reviewed false alarms to the active model's bank under a guard (``bank_update``).

A job trains on the station's kept OK images (those not flagged as missed defects) and
on the NG parts reviewers marked as false alarms, with the same parameters as the
active version. It then scores every reviewed part with both the new and the active
model, so the engineer sees both on the same parts before activating anything. The
comparison says how many reviewed parts were in the new model's training set: on
those, the new model has seen the answer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from huoyan.core.artifact import artifact_kind
from huoyan.core.detector import Fitter, ImageDetector, fit_here
from huoyan.core.station import StationHandle
from huoyan.detectors import detector_class, judges_signals, load_image_detector
from huoyan.store.blobs import BlobStore
from huoyan.store.reviews import Labelled, Reviews
from huoyan.store.versions import JobStatus, ModelVersions, artifact_of
from huoyan.vision.bank_update import guarded_update
from huoyan.vision.imageio import ImageError, decode_image
from huoyan.vision.patchcore import PatchCore

log = logging.getLogger(__name__)
MIN_TRAIN_IMAGES = 8


class TrainingError(RuntimeError):
    """A job that cannot run as asked (too few images, a missing model file)."""


def compare_on_reviews(model: ImageDetector, images: Sequence[np.ndarray], labels: Sequence[bool]) -> dict[str, Any]:
    """How a model judges the reviewed parts at its own calibrated threshold."""
    if not images:
        return {"n": 0}
    scores, _ = model.score(list(images))
    truth = np.asarray(labels, dtype=bool)
    ng = scores > model.threshold
    out: dict[str, Any] = {
        "n": int(truth.size),
        "defects": int(truth.sum()),
        "good": int((~truth).sum()),
        "threshold": float(model.threshold),
        "false_alarms": int((ng & ~truth).sum()),
        "missed_defects": int((~ng & truth).sum()),
        "accuracy": float((ng == truth).mean()),
        "image_auroc": float(roc_auc_score(truth, scores)) if 0 < truth.sum() < truth.size else None,
    }
    return out


class Trainer:
    """Runs the server's training jobs one at a time, on a thread of its own."""

    def __init__(
        self,
        versions: ModelVersions,
        reviews: Reviews,
        hosts: Callable[[], dict[str, StationHandle]],
        artifacts: BlobStore,
        models_dir: Path,
        runtime: str = "onnx",
        poll_s: float = 1.0,
        fitter: Fitter = fit_here,
    ) -> None:
        self.versions = versions
        self.reviews = reviews
        self.hosts = hosts
        self.artifacts = artifacts  # every version's model file, by sha256
        self.models_dir = models_dir
        self.runtime = runtime
        self.poll_s = poll_s
        self.fitter = fitter  # where the fitting runs: this process, or a Ray cluster
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.versions.fail_interrupted()
        self._thread = threading.Thread(target=self._loop, name="huoyan-training", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                job = self.versions.claim(list(self.hosts()))
            except Exception:
                log.exception("cannot read training jobs")
                job = None
            if job is None:
                self._stop.wait(self.poll_s)
                continue
            self.run(job)

    def run(self, job: dict[str, Any]) -> None:
        try:
            version_id, message = self._train(job)
        except Exception as exc:
            log.exception("training job %s failed", job["id"])
            self.versions.finish(job["id"], JobStatus.FAILED, f"{type(exc).__name__}: {exc}")
            return
        self.versions.finish(job["id"], JobStatus.DONE, message, version_id)

    def _images(self, host: StationHandle, shas: Sequence[str]) -> tuple[list[np.ndarray], list[int]]:
        images, kept = [], []
        for i, sha in enumerate(shas):
            try:
                images.append(decode_image(host.blob(sha), sha))
                kept.append(i)
            except (OSError, ImageError) as exc:
                log.warning("training: image %s unusable (%s)", sha[:12], exc)
        return images, kept

    def _train(self, job: dict[str, Any]) -> tuple[int, str]:
        host = self.hosts().get(job["station_id"])
        if host is None:
            raise TrainingError(f"station {job['station_id']} is not hosted by this server")
        active = self.versions.active(host.station_id)
        if active is None:
            raise TrainingError("the station has no active model version to take parameters from")
        try:
            path = artifact_of(active, self.artifacts)
            kind = artifact_kind(path)
        except FileNotFoundError as exc:
            raise TrainingError(str(exc)) from exc
        if judges_signals(detector_class(kind)):
            # The records keep a few healthy windows, not the healthy running a model is fitted on.
            raise TrainingError(
                f"the station's {kind!r} model learns from recordings of healthy running: refit it with "
                "'huoyan fit --detector vibration HEALTHY_RECORDINGS...' and name the new file in the recipe's model"
            )
        try:
            parent = load_image_detector(path, runtime=self.runtime)
        except FileNotFoundError as exc:
            raise TrainingError(str(exc)) from exc
        if getattr(parent, "names_defects", False):
            # Its classifier learns from annotated pairs, which the review queue does not hold yet.
            raise TrainingError(
                f"the station's {parent.kind!r} model learns from annotated template/test pairs: "
                "train it with 'huoyan fit --detector template' and name the new file in the recipe's model"
            )
        max_images = int(job["params"].get("max_images", 200))
        if job["params"].get("mode") == "update":
            return self._update(job, host, active, path, max_images)
        picked = self.reviews.good_images(host.station_id, max_images)
        train, kept = self._images(host, [sha for _, sha in picked])
        if len(train) < MIN_TRAIN_IMAGES:
            raise TrainingError(
                f"only {len(train)} good images are stored for {host.station_id}; at least {MIN_TRAIN_IMAGES} are "
                "needed (keep more OK images with storage.keep_ok_every, or review more false alarms)"
            )
        self.versions.progress(job["id"], f"training on {len(train)} images")
        model = self.fitter(parent, train)
        assert isinstance(model, ImageDetector)
        version = self._add_version(
            job, host, active, model, parent, [picked[i] for i in kept], "server training job", {}
        )
        return version["id"], f"version {version['version']} trained on {len(train)} images"

    def _add_version(
        self,
        job: dict[str, Any],
        host: StationHandle,
        active: dict[str, Any],
        model: ImageDetector,
        parent: ImageDetector,
        learned: Sequence[tuple[int, str]],
        source: str,
        metrics: dict[str, Any],
    ) -> dict[str, Any]:
        """Keep ``model`` as a candidate version of the station, child of ``active``, with the
        inspections it learned from and its comparison with the parent on reviewed parts."""
        path = self.models_dir / host.station_id / f"job-{job['id']}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(path)
        sha = self.artifacts.put_file(path)
        self.versions.progress(job["id"], "comparing with the active version on reviewed parts")
        labelled = self.reviews.labelled(host.station_id)
        compared = self._compare(host, labelled, model, parent, {inspection for inspection, _ in learned})
        return self.versions.add(
            host.station_id,
            sha,
            path.name,
            model.card_.model_dump(mode="json"),
            str(path.resolve()),
            created_by=job["requested_by"],
            parent_id=active["id"],
            trained_on={
                "source": source,
                "job_id": job["id"],
                "images": len(learned),
                "inspection_ids": [inspection for inspection, _ in learned],
                "image_sha256": [sha for _, sha in learned],
            },
            metrics=compared | metrics,
        )

    def _update(
        self, job: dict[str, Any], host: StationHandle, active: dict[str, Any], path: Path, max_images: int
    ) -> tuple[int, str]:
        """A guarded update: the reviewed false alarms join the active model's bank.

        A seeded third of them is held out with the kept OK images, so the check on good
        parts sees some the update did not learn: the kept OK images alone passed the
        active model already and would show nothing. False alarms are over-represented
        there (every one is kept, OK parts only every n-th), which errs towards refusing.
        """
        model = load_image_detector(path, runtime=self.runtime)
        if not isinstance(model, PatchCore):
            raise TrainingError(
                f"only memory-bank (patchcore) models take a guarded update, not {model.kind!r}: train a new version"
            )
        alarms = self.reviews.good_images(host.station_id, max_images, ok=False)
        alarm_images, alarm_kept = self._images(host, [sha for _, sha in alarms])
        if not alarm_images:
            raise TrainingError(f"no reviewed false alarms of {host.station_id} with a kept image to add")
        order = np.random.default_rng(job["id"]).permutation(len(alarm_images))
        held = set(order[: len(alarm_images) // 3].tolist())
        adds = [i for i in range(len(alarm_images)) if i not in held]
        ok = self.reviews.good_images(host.station_id, max_images, ok=True, false_alarms=False)
        ok_images, _ = self._images(host, [sha for _, sha in ok])
        labelled = self.reviews.labelled(host.station_id)
        defect_items = [item for item in labelled if item.is_defect]
        defects, _ = self._images(host, [item.image_sha256 for item in defect_items])
        self.versions.progress(job["id"], f"adding {len(adds)} false alarms to the bank")
        check = guarded_update(
            model,
            [alarm_images[i] for i in adds],
            ok_images + [alarm_images[i] for i in sorted(held)],
            defects,
        )
        if not check.accepted:
            raise TrainingError("update refused: " + "; ".join(check.reasons))
        added = [alarms[alarm_kept[i]] for i in adds]
        parent = load_image_detector(path, runtime=self.runtime)
        guard = {"guard": check.model_dump(mode="json")}
        version = self._add_version(job, host, active, model, parent, added, "guarded bank update", guard)
        return version["id"], (
            f"version {version['version']}: {len(added)} false alarms added to the bank "
            f"({check.bank_rows_after - check.bank_rows_before} rows)"
        )

    def _compare(
        self,
        host: StationHandle,
        labelled: list[Labelled],
        new: ImageDetector,
        active: ImageDetector,
        trained: set[int],
    ) -> dict[str, Any]:
        images, kept = self._images(host, [item.image_sha256 for item in labelled])
        labels = [labelled[i].is_defect for i in kept]
        return {
            "reviewed_parts": len(images),
            "in_training_set": sum(labelled[i].inspection_id in trained for i in kept),
            "candidate": compare_on_reviews(new, images, labels),
            "active": compare_on_reviews(active, images, labels),
        }
