"""Webhook channel: each result POSTed as JSON with an HMAC-SHA256 signature, retried with back-off.

Headers: ``X-Huoyan-Signature: sha256=<hex HMAC of the body with the shared secret>``,
``X-Huoyan-Event: result`` and ``X-Huoyan-Delivery: <record key>`` (repeats of one
delivery carry the same key). A 2xx answer is success; a network error, a timeout,
408, 429 or 5xx is retried from the on-disk queue with exponential back-off; any
other 4xx means the receiver will never take the message, which is then set aside
under ``rejected/`` with an alarm rather than blocking every later result.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from huoyan.core.recipe import WebhookFeedback
from huoyan.core.records import InspectionRecord, StationEvent
from huoyan.io.feedback import OutageAlarm, SignalTimes
from huoyan.io.outbox import DeliveryError, Outbox, Rejected

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Huoyan-Signature"


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str | None) -> bool:
    """What a receiver does: recompute the signature and compare in constant time."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


class WebhookChannel:
    name = "webhook"

    def __init__(
        self,
        cfg: WebhookFeedback,
        station: str,
        outbox_dir: Path,
        times: SignalTimes,
        emit: Callable[[StationEvent], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.station = station
        self.times = times
        self.alarm = OutageAlarm(station, "webhook-unavailable", emit)
        secret = os.environ.get(cfg.secret_env, "") if cfg.secret_env else ""
        if cfg.secret_env and not secret:
            raise ValueError(f"webhook: environment variable {cfg.secret_env} (the HMAC secret) is not set")
        self.secret = secret.encode()
        self._http = httpx.Client(timeout=cfg.timeout_s)
        self.outbox = Outbox(
            "webhook", outbox_dir, self._deliver, self._delivered, self.alarm, max_backoff_s=cfg.max_backoff_s
        )

    async def start(self) -> None:
        self.alarm.loop = asyncio.get_running_loop()
        self.outbox.start()

    async def stop(self) -> None:
        await asyncio.to_thread(self.outbox.stop)
        self._http.close()

    def result(self, record: InspectionRecord, message: dict[str, Any]) -> None:
        self.outbox.put("result", message)

    def event(self, event: StationEvent, message: dict[str, Any]) -> None:
        """Webhooks carry results only; alarms go to MQTT, OPC UA and the records."""

    def _deliver(self, kind: str, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        headers = {"Content-Type": "application/json", "X-Huoyan-Event": kind, "X-Huoyan-Delivery": payload["key"]}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        try:
            response = self._http.post(self.cfg.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
        code = response.status_code
        if 200 <= code < 300:
            return
        if code in (408, 429) or code >= 500:
            raise DeliveryError(f"HTTP {code} from {self.cfg.url}")
        raise Rejected(f"HTTP {code} from {self.cfg.url}")

    def _delivered(self, kind: str, payload: dict[str, Any]) -> None:
        self.times.signalled(self.name, payload["key"], payload["part_id"], payload["decided_at"])
