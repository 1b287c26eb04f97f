"""MQTT channel (paho-mqtt): results at QoS 1 in order, retained status with a Last Will, retained alarms.

Topics, under ``<prefix>/<plant>/<line>/<station>/``:

- ``result``: one ``huoyan.result/1`` message per part, QoS 1, not retained;
- ``status``: ``huoyan.status/1``, retained; the broker publishes ``online: false`` as the Last Will;
- ``alarm/<kind>``: ``huoyan.event/1``, retained, so a dashboard that connects later sees
  what is active; the clearing event (``active: false``) replaces it.

Results and alarms go through the channel's ``Outbox``; paho keeps an unacknowledged
QoS 1 message and resends it after a reconnect, so each message is published once and
waited for until the broker's PUBACK, and only then removed from the disk.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from huoyan.core.recipe import MqttFeedback
from huoyan.core.records import InspectionRecord, Severity, StationEvent
from huoyan.io.feedback import OutageAlarm, SignalTimes
from huoyan.io.message import status_message
from huoyan.io.outbox import DeliveryError, Outbox

log = logging.getLogger(__name__)


def topic_base(cfg: MqttFeedback, plant: str, line: str, station: str) -> str:
    return f"{cfg.topic_prefix}/{plant}/{line}/{station}"


class MqttChannel:
    name = "mqtt"

    def __init__(
        self,
        cfg: MqttFeedback,
        station: str,
        plant: str,
        line: str,
        outbox_dir: Path,
        times: SignalTimes,
        emit: Callable[[StationEvent], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.station = station
        self.plant = plant
        self.line = line
        self.times = times
        self.alarm = OutageAlarm(station, "mqtt-unavailable", emit)
        self.base = topic_base(cfg, plant, line, station)
        self._alarms: dict[str, str] = {}
        self._inflight: dict[int, paho.MQTTMessageInfo] = {}
        self._connected = threading.Event()
        self._waiting: set[int] = set()  # mids of outbox messages; status publishes are not tracked
        self._acked: set[int] = set()
        self._ack = threading.Condition()
        self.client = self._client()
        # The broker is local to the line: retry often rather than backing off for long.
        self.outbox = Outbox("mqtt", outbox_dir, self._deliver, self._delivered, self.alarm, max_backoff_s=2.0)

    def _client(self) -> paho.Client:
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"huoyan-{self.station}", clean_session=True)
        if self.cfg.username:
            password = os.environ.get(self.cfg.password_env or "", None) if self.cfg.password_env else None
            c.username_pw_set(self.cfg.username, password)
        c.will_set(f"{self.base}/status", self._status(False), qos=1, retain=True)
        c.reconnect_delay_set(min_delay=1, max_delay=5)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        return c

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._ack:
            if mid in self._waiting:
                self._acked.add(mid)
                self._ack.notify_all()

    def _status(self, online: bool) -> str:
        return json.dumps(status_message(self.station, self.plant, self.line, online, self._alarms))

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.error("mqtt: broker refused the connection: %s", reason)
            return
        self._connected.set()
        client.publish(f"{self.base}/status", self._status(True), qos=1, retain=True)
        log.info("mqtt: connected to %s:%d", self.cfg.host, self.cfg.port)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connected.clear()
        log.warning("mqtt: disconnected from broker (%s)", reason)

    # -- the station side ----------------------------------------------------------------
    async def start(self) -> None:
        self.alarm.loop = asyncio.get_running_loop()
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self.client.loop_start()
        self.outbox.start()

    async def stop(self) -> None:
        await asyncio.to_thread(self.outbox.stop)
        if self._connected.is_set():
            info = self.client.publish(f"{self.base}/status", self._status(False), qos=1, retain=True)
            await asyncio.to_thread(info.wait_for_publish, 2.0)
        self.client.disconnect()
        self.client.loop_stop()

    def result(self, record: InspectionRecord, message: dict[str, Any]) -> None:
        self.outbox.put("result", message)

    def event(self, event: StationEvent, message: dict[str, Any]) -> None:
        if event.severity != Severity.ALARM and event.active:
            return  # warnings and notices stay in the station's log and records
        if event.active:
            self._alarms[event.kind] = event.message
        else:
            self._alarms.pop(event.kind, None)
        self.outbox.put("event", message)

    # -- the outbox thread ---------------------------------------------------------------
    def _deliver(self, kind: str, payload: dict[str, Any]) -> None:
        info = self._inflight.get(id(payload))
        if info is None:
            if kind == "result":
                topic, retain = f"{self.base}/result", False
            else:
                topic, retain = f"{self.base}/alarm/{payload['kind']}", True
            with self._ack:  # held so that the PUBACK cannot be handled before we wait for it
                info = self.client.publish(topic, json.dumps(payload), qos=1, retain=retain)
                self._waiting.add(info.mid)
            self._inflight[id(payload)] = info
        # paho queues a QoS 1 message while disconnected and resends it after a reconnect,
        # so this message is published once and its PUBACK waited for, however long.
        with self._ack:
            if not self._ack.wait_for(lambda: info.mid in self._acked, timeout=2.0):
                raise DeliveryError(f"no PUBACK yet from {self.cfg.host}:{self.cfg.port}")
            self._acked.discard(info.mid)
            self._waiting.discard(info.mid)
        del self._inflight[id(payload)]
        if kind == "event":  # the retained status carries the active alarms too
            self.client.publish(f"{self.base}/status", self._status(True), qos=1, retain=True)

    def _delivered(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "result":
            self.times.signalled(self.name, payload["key"], payload["part_id"], payload["decided_at"])
