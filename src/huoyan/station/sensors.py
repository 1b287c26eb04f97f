"""Where windows of a sensor channel come from: recorded files replayed at their real
rate, blocks published on an MQTT topic, or a variable subscribed on an OPC UA server.

Each source turns blocks of samples into the model's windows (``windowing``) and hands
every window over as an ``Arrival``; a file that cannot be read becomes an arrival with
its error (an ERROR record), never a silent skip. Live sources alarm when the sensor
goes offline or silent and clear the alarm when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from huoyan.core.models import SignalWindow
from huoyan.core.recipe import MqttSensorSource, OpcUaSensorSource, SensorReplaySource
from huoyan.core.records import Arrival, Severity, utcnow
from huoyan.station.sources import PartIds, SeqCounter, Source
from huoyan.station.windowing import Block, Windower

log = logging.getLogger(__name__)

OFFLINE, SILENT, FILE = "sensor-offline", "sensor-silent", "sensor-file"


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """The windows the station's model judges: length and hop in seconds, and the
    channel it was fitted on (where a file has several)."""

    length_s: float
    hop_s: float
    channel: str | None = None


class RecordingLike(Protocol):
    @property
    def samples(self) -> np.ndarray: ...

    @property
    def sample_rate(self) -> float: ...

    @property
    def channel(self) -> str: ...

    @property
    def rpm(self) -> float | None: ...


# Reads one channel of a recorded file: (path, channel, sample rate, rpm, the model's
# channel) -> the recording; a ValueError names what is wrong (``huoyan.signals.readers``).
Reader = Callable[[Path, str | None, float | None, float | None, str | None], RecordingLike]


class SensorSource(Source):
    """What every sensor source shares: windows to arrivals, alarms by kind."""

    kind = "sensor"

    def __init__(self, station_id: str, part_ids: PartIds, counter: SeqCounter, queue: int, spec: WindowSpec) -> None:
        super().__init__(station_id, part_ids, counter, queue)
        self.spec = spec

    def _alarm(self, kind: str, severity: Severity, message: str, active: bool = True) -> None:
        self._emit(kind, severity, message, active)

    def _windower(self, rate: float, channel: str, source: str, rpm: float | None, late_s: float) -> Windower:
        return Windower(
            length=max(1, round(self.spec.length_s * rate)),
            hop=max(1, round(self.spec.hop_s * rate)),
            rate=rate,
            channel=channel,
            source=source,
            alarm=self._alarm,
            rpm=rpm,
            late_s=late_s,
        )

    def _arrival(self, window: SignalWindow, key: str, name: str) -> Arrival:
        seq = self.counter.next()
        return Arrival(
            key=f"{self.station_id}:{self.kind}:{key}",
            source_name=name,
            # A window of a machine's running is no part: an id only when the recipe counts them.
            part_id=self.part_ids(name, seq) if self.part_ids.policy.source == "counter" else None,
            arrived_at=utcnow(),
            window=window,
            seq=seq,
        )

    def _failed(self, name: str, error: str) -> Arrival:
        seq = self.counter.next()
        return Arrival(
            key=f"{self.station_id}:{self.kind}:failed:{seq}",
            source_name=name,
            part_id=None,
            arrived_at=utcnow(),
            seq=seq,
            meta={"error": error},
        )


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SensorReplay(SensorSource):
    """Recordings replayed at their real rate (times ``speed``): each window is handed
    over when its last sample would have been recorded."""

    kind = "sensor_replay"

    def __init__(
        self,
        cfg: SensorReplaySource,
        station_id: str,
        part_ids: PartIds,
        counter: SeqCounter,
        spec: WindowSpec,
        reader: Reader,
        suffixes: frozenset[str],
    ) -> None:
        super().__init__(station_id, part_ids, counter, cfg.queue, spec)
        self.cfg = cfg
        self.reader = reader
        root = Path(cfg.path)
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in suffixes) if root.is_dir() else [root]
        if not files:
            raise FileNotFoundError(f"sensor replay: no recordings under {root}")
        self.files = files

    async def arrivals(self) -> AsyncIterator[Arrival]:
        loop = asyncio.get_running_loop()
        lap = 0
        while not self.stopped:
            for path in self.files:
                try:
                    rec = await asyncio.to_thread(
                        self.reader, path, self.cfg.channel, self.cfg.sample_rate, self.cfg.rpm, self.spec.channel
                    )
                except (OSError, ValueError) as exc:
                    self._alarm(FILE, Severity.ALARM, str(exc))
                    yield self._failed(path.name, str(exc))
                    continue
                windower = self._windower(rec.sample_rate, rec.channel, str(path), rec.rpm, late_s=1e9)
                started = loop.time()
                windows = windower.add(Block(rec.samples, arrived=0.0, t0=0.0, rate=rec.sample_rate))
                if not windows:
                    error = f"{path}: {rec.samples.size / rec.sample_rate:.3g} s, shorter than one window"
                    yield self._failed(path.name, error)
                for w in windows:
                    due = started + (w.start_s + w.samples.size / w.sample_rate) / self.cfg.speed
                    await self._pause(max(0.0, due - loop.time()))
                    if self.stopped:
                        return
                    index = round(w.start_s * w.sample_rate)
                    yield self._arrival(w, f"{path.name}:{lap}:{index}", f"{path.name}@{w.start_s:.3f}s")
            if not self.cfg.loop:
                return
            lap += 1


def parse_block(payload: bytes, arrived: float) -> Block:
    """A gateway's block: JSON with ``samples`` (and ``rate``, ``seq``, ``t0``, ``rpm``),
    or raw little-endian float32; ``ValueError`` names what is wrong."""
    text = payload.lstrip()[:1]
    if text in (b"{", b"["):
        try:
            body = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"not a JSON block: {exc}") from exc
        if isinstance(body, list):
            body = {"samples": body}
        if not isinstance(body, dict) or not isinstance(body.get("samples"), list):
            raise ValueError("a JSON block needs 'samples', a list of numbers")
        try:
            samples = np.asarray(body["samples"], dtype=np.float64)
            numbers = {k: None if body.get(k) is None else float(body[k]) for k in ("rate", "t0", "rpm")}
            seq = None if body.get("seq") is None else int(body["seq"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"a JSON block with a field that is not a number: {exc}") from exc
        return Block(samples, arrived, numbers["t0"], seq, numbers["rate"], numbers["rpm"])
    if len(payload) % 4:
        raise ValueError(f"a raw block of {len(payload)} bytes is not float32 samples")
    return Block(np.frombuffer(payload, dtype="<f4").astype(np.float64), arrived)


class _LiveSource(SensorSource):
    """A live stream of blocks: queued from the client's thread or task, windowed here."""

    def __init__(self, cfg: MqttSensorSource | OpcUaSensorSource, station_id: str, part_ids: PartIds,
                 counter: SeqCounter, spec: WindowSpec) -> None:  # fmt: skip
        super().__init__(station_id, part_ids, counter, cfg.queue, spec)
        self.cfg = cfg
        self.name = cfg.channel
        self.windower = self._windower(cfg.sample_rate, cfg.channel, self.describe(), cfg.rpm, cfg.late_s)
        self._blocks: asyncio.Queue[Block | str] = asyncio.Queue(maxsize=cfg.queue * 64)
        self._silent = False
        self.dropped_blocks = 0

    def describe(self) -> str:
        raise NotImplementedError

    def _offer(self, item: Block | str) -> None:
        """Queue a block (or a refusal's reason); on the event loop."""
        try:
            self._blocks.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped_blocks += 1
            self._alarm(
                "sensor-overrun",
                Severity.ALARM,
                f"{self.describe()}: inspection fell behind the sensor; {self.dropped_blocks} blocks dropped",
            )

    async def _windows(self) -> AsyncIterator[Arrival]:
        silent_after = max(self.cfg.late_s, 2 * self.spec.hop_s)
        while not self.stopped:
            try:
                item = await asyncio.wait_for(self._blocks.get(), timeout=silent_after)
            except TimeoutError:
                if not self._silent:
                    self._silent = True
                    self._alarm(SILENT, Severity.ALARM, f"{self.describe()}: no samples for {silent_after:.1f} s")
                continue
            if self._silent:
                self._silent = False
                self._alarm(SILENT, Severity.INFO, f"{self.describe()}: samples again", active=False)
            if isinstance(item, str):
                self._alarm("sensor-rate", Severity.ALARM, f"{self.describe()}: refused a block: {item}")
                continue
            for w in self.windower.add(item):
                index = round(w.start_s * w.sample_rate)
                yield self._arrival(w, f"{self.name}:{index}", f"{self.name}@{_stamp(w.start_s)}")


class MqttSensor(_LiveSource):
    """Blocks from an MQTT topic (paho-mqtt, QoS 1, reconnecting by itself)."""

    kind = "mqtt_sensor"
    cfg: MqttSensorSource

    def describe(self) -> str:
        return f"mqtt://{self.cfg.host}:{self.cfg.port}/{self.cfg.topic}"

    async def arrivals(self) -> AsyncIterator[Arrival]:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        loop = asyncio.get_running_loop()
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"huoyan-{self.station_id}-{self.name}")
        if self.cfg.username:
            password = os.environ.get(self.cfg.password_env) if self.cfg.password_env else None
            client.username_pw_set(self.cfg.username, password)
        client.reconnect_delay_set(min_delay=1, max_delay=5)

        def connected(c: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            if reason.is_failure:
                loop.call_soon_threadsafe(
                    self._alarm, OFFLINE, Severity.ALARM, f"{self.describe()}: broker refused ({reason})"
                )
                return
            c.subscribe(self.cfg.topic, qos=1)
            loop.call_soon_threadsafe(self._alarm, OFFLINE, Severity.INFO, f"{self.describe()}: connected", False)

        def disconnected(c: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            if not self.stopped:
                loop.call_soon_threadsafe(
                    self._alarm, OFFLINE, Severity.ALARM, f"{self.describe()}: broker lost ({reason}); reconnecting"
                )

        def message(c: Any, userdata: Any, msg: Any) -> None:
            try:
                item: Block | str = parse_block(msg.payload, time.time())
            except ValueError as exc:
                item = str(exc)
            loop.call_soon_threadsafe(self._offer, item)

        client.on_connect = connected
        client.on_disconnect = disconnected
        client.on_message = message
        client.connect_async(self.cfg.host, self.cfg.port, keepalive=30)
        client.loop_start()
        try:
            async for arrival in self._windows():
                yield arrival
        finally:
            client.disconnect()
            client.loop_stop()


class OpcUaSensor(_LiveSource):
    """Blocks from a subscribed OPC UA variable (asyncua), reconnecting when the session is lost."""

    kind = "opcua_sensor"
    cfg: OpcUaSensorSource

    def describe(self) -> str:
        return f"{self.cfg.endpoint} {self.cfg.node}"

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        """asyncua's subscription handler: one change is one block."""
        stamp = data.monitored_item.Value.SourceTimestamp
        t0 = stamp.replace(tzinfo=UTC).timestamp() if stamp is not None else None
        try:
            samples = np.asarray(value if isinstance(value, list | tuple) else [value], dtype=np.float64)
            item: Block | str = Block(samples, time.time(), t0)
        except (TypeError, ValueError) as exc:
            item = f"the variable's value is not numbers ({exc})"
        self._offer(item)

    async def _session(self) -> Any:
        from asyncua import Client

        client = Client(self.cfg.endpoint, timeout=5)
        if self.cfg.username:
            client.set_user(self.cfg.username)
            if self.cfg.password_env:
                client.set_password(os.environ.get(self.cfg.password_env, ""))
        await client.connect()
        node = client.get_node(self.cfg.node)
        subscription = await client.create_subscription(self.cfg.publishing_ms, self)
        await subscription.subscribe_data_change(node, queuesize=max(16, self.cfg.queue))
        return client

    async def arrivals(self) -> AsyncIterator[Arrival]:
        client = None
        watcher: asyncio.Task[None] | None = None

        async def watch() -> None:
            nonlocal client
            while not self.stopped:
                if client is None:
                    try:
                        client = await self._session()
                        self._alarm(OFFLINE, Severity.INFO, f"{self.describe()}: subscribed", active=False)
                    except Exception as exc:
                        self._alarm(OFFLINE, Severity.ALARM, f"{self.describe()}: cannot subscribe ({exc})")
                        await self._pause(2.0)
                        continue
                await self._pause(1.0)
                try:
                    await client.check_connection()
                except Exception as exc:
                    self._alarm(OFFLINE, Severity.ALARM, f"{self.describe()}: session lost ({exc}); reconnecting")
                    with contextlib.suppress(Exception):
                        await client.disconnect()
                    client = None

        watcher = asyncio.create_task(watch())
        try:
            async for arrival in self._windows():
                yield arrival
        finally:
            watcher.cancel()
            with contextlib.suppress(BaseException):
                await watcher
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.disconnect()


@dataclass(frozen=True, slots=True)
class RecordingReader:
    """How a replay reads recorded files (given by the runner: ``huoyan.signals.readers``)."""

    read: Reader
    suffixes: frozenset[str]
