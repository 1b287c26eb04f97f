"""Stations that judge a sensor channel: windows from replayed files, an MQTT topic (the
real Mosquitto broker) and an OPC UA variable (an asyncua server), with the alarms a
stream needs, records with diagnosis and measurements, and a change of condition raised."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from huoyan.core.recipe import load_recipe
from huoyan.core.records import Severity
from huoyan.runner import open_station, run_station
from huoyan.signals.detector import VibrationMonitor
from huoyan.station.windowing import Block, Windower
from huoyan.store.records import query_events, query_records
from linepeers import Mosquitto, free_port, station_thread
from signalkit import RATE, RPM, signal_windows, vibration

BLOCK = 1000  # samples per block a gateway sends (50 ms at 20 kHz)


@pytest.fixture(scope="module")
def vibration_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = VibrationMonitor(window_s=0.25, hop_s=0.25, bearing="6205", rpm=RPM)
    model.fit(signal_windows(4.0, None, 0, length=0.25, hop=0.125))
    return model.save(tmp_path_factory.mktemp("vib") / "spindle.safetensors")


def write_recipe(tmp: Path, model: Path, source: str, extra: str = "") -> Path:
    path = tmp / "recipe.yaml"
    path.write_text(
        f"station: spindle-1\nproduct: spindle\nrecipe: spindle-condition\nversion: '1'\nsource: {source}\n"
        f"model: {model}\nstorage: {{keep_ok_every: 4}}\n{extra}"
    )
    return path


# -- windowing ------------------------------------------------------------------------------
class Alarms:
    def __init__(self) -> None:
        self.raised: list[tuple[str, bool, str]] = []

    def __call__(self, kind: str, severity: Severity, message: str, active: bool) -> None:
        self.raised.append((kind, active, message))


def windower(alarms: Alarms) -> Windower:
    return Windower(length=2000, hop=1000, rate=RATE, channel="DE", source="gw", alarm=alarms, late_s=1.0)


def test_blocks_become_overlapping_windows_at_their_times() -> None:
    alarms = Alarms()
    w = windower(alarms)
    t0 = 1_000_000.0
    got = []
    for i in range(5):
        got += w.add(Block(np.full(BLOCK, float(i)), arrived=t0 + 1, t0=t0 + i * BLOCK / RATE, seq=i))
    assert [x.start_s - t0 for x in got] == pytest.approx([0.0, 0.05, 0.1, 0.15])
    assert [x.samples[0] for x in got] == [0, 1, 2, 3] and all(x.samples.size == 2000 for x in got)
    assert alarms.raised == []


def test_a_gap_in_seq_or_time_is_an_alarm_and_no_window_spans_it() -> None:
    alarms = Alarms()
    w = windower(alarms)
    t0 = 1_000_000.0
    got = w.add(Block(np.zeros(BLOCK), t0 + 1, t0, seq=0))
    got += w.add(Block(np.zeros(BLOCK), t0 + 1, t0 + 0.05, seq=1))
    got += w.add(Block(np.ones(BLOCK), t0 + 1, t0 + 0.15, seq=3))  # block 2 never came
    got += w.add(Block(np.ones(BLOCK), t0 + 1, t0 + 0.20, seq=4))
    assert [x.start_s - t0 for x in got] == pytest.approx([0.0, 0.15])
    assert set(np.unique(got[1].samples)) == {1.0}  # the window after the gap holds no sample before it
    assert [(k, a) for k, a, _ in alarms.raised] == [("sensor-gap", True), ("sensor-gap", False)]
    assert "block 3 came after block 1" in alarms.raised[0][2]
    w.add(Block(np.ones(BLOCK), t0 + 1, t0 + 0.40))  # no seq: the time says it
    assert alarms.raised[-1][0] == "sensor-gap" and "+0.150 s" in alarms.raised[-1][2]


def test_late_blocks_wrong_rates_and_nan_raise_alarms_and_are_counted() -> None:
    alarms = Alarms()
    w = windower(alarms)
    now = time.time()
    w.add(Block(np.zeros(BLOCK), arrived=now, t0=now - 5.0, seq=0))
    assert alarms.raised[-1][:2] == ("sensor-late", True)
    assert w.add(Block(np.zeros(BLOCK), now, None, seq=1, rate=10_000.0)) == []
    assert (
        alarms.raised[-1][:2] == ("sensor-rate", True)
        and "10000 Hz, but this station expects 20000 Hz" in (alarms.raised[-1][2])
    )
    bad = np.zeros(BLOCK)
    bad[3] = np.nan
    assert w.add(Block(bad, now, None, seq=2)) == []
    assert "2 refused so far" in alarms.raised[-1][2]
    w.add(Block(np.zeros(BLOCK), time.time(), time.time() - BLOCK / RATE, seq=3))
    cleared = {k for k, active, _ in alarms.raised if not active}
    assert {"sensor-rate", "sensor-late"} <= cleared


# -- a replayed recording ---------------------------------------------------------------------
def test_replayed_recordings_give_a_record_per_window_with_diagnosis_and_an_alarm(
    vibration_model: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "recorded"
    folder.mkdir()
    np.save(folder / "a_healthy.npy", vibration(1.0, None, 5))
    np.save(folder / "b_outer.npy", vibration(1.0, "outer_race", 6))
    (folder / "c_broken.npy").write_bytes(b"not numpy")
    source = f"{{type: sensor_replay, path: {folder}, sample_rate: {RATE}, speed: 20}}"
    recipe = load_recipe(write_recipe(tmp_path, vibration_model, source))
    opened = open_station(recipe, f"sqlite:///{tmp_path / 'r.db'}")
    summary = run_station(opened, status=None)
    rows = query_records(opened.engine)
    assert summary["parts"] == len(rows) == 9  # 4 windows of each recording, and the broken file
    healthy = [r for r in rows if r["source_name"].startswith("a_healthy")]
    outer = [r for r in rows if r["source_name"].startswith("b_outer")]
    assert [r["verdict"] for r in healthy] == ["OK"] * 4 and {r["diagnosis"] for r in healthy} == {None}
    assert [r["verdict"] for r in outer] == ["NG"] * 4 and {r["diagnosis"] for r in outer} == {"outer_race"}
    assert outer[0]["source_name"] == "b_outer.npy@0.000s"
    names = {m["name"] for m in outer[0]["measurements"]}
    assert {"rms", "kurtosis", "velocity_rms_mm_s", "crest"} <= names
    kinds = {e["kind"] for e in outer[0]["evidence"]}
    assert kinds == {"signal", "condition"}
    condition = json.loads(opened.store.blobs.get(next(e["sha256"] for e in outer[0]["evidence"]
                                                       if e["kind"] == "condition")))  # fmt: skip
    assert condition["diagnosis"]["family"] == "outer_race" and len(condition["envelope"]) > 100
    broken = next(r for r in rows if r["source_name"] == "c_broken.npy")
    assert broken["verdict"] == "ERROR" and "c_broken.npy" in broken["error"]
    events = query_events(opened.engine)
    changed = [e for e in events if e["kind"] == "condition-changed"]
    assert changed and changed[0]["active"] and "outer_race" in changed[0]["message"]
    assert any(e["kind"] == "sensor-file" for e in events)


def test_a_sensor_source_needs_a_sensor_model_and_back(vibration_model: Path, model_file: Path, tmp_path: Path) -> None:
    sensor = f"{{type: sensor_replay, path: {tmp_path}, sample_rate: {RATE}}}"
    with pytest.raises(ValueError, match="source: a sensor_replay source gives windows of a sensor channel"):
        open_station(load_recipe(write_recipe(tmp_path, model_file, sensor)), f"sqlite:///{tmp_path / 'a.db'}")
    folder = f"{{type: hot_folder, path: {tmp_path / 'in'}}}"
    with pytest.raises(ValueError, match="source: a 'vibration' model judges windows of a sensor channel"):
        open_station(load_recipe(write_recipe(tmp_path, vibration_model, folder)), f"sqlite:///{tmp_path / 'b.db'}")


# -- live: MQTT -------------------------------------------------------------------------------
def wait_for(predicate: Any, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError("condition not met")
        time.sleep(0.05)


def blocks(seconds: float, fault: str | None, seed: int, t0: float) -> Iterator[tuple[int, float, np.ndarray]]:
    x = vibration(seconds, fault, seed)
    for i in range(x.size // BLOCK):
        yield i, t0 + i * BLOCK / RATE, x[i * BLOCK : (i + 1) * BLOCK]


@pytest.mark.slow
def test_an_mqtt_sensor_feeds_a_live_station_with_gaps_and_bad_blocks_alarmed(
    vibration_model: Path, tmp_path: Path
) -> None:
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    topic = "plant/line/spindle-1/acc/DE"
    source = (
        f"{{type: mqtt_sensor, host: 127.0.0.1, port: {broker.port}, topic: {topic}, channel: DE, sample_rate: {RATE}}}"
    )
    feedback = f"feedback: {{mqtt: {{host: 127.0.0.1, port: {broker.port}}}}}\n"
    opened = open_station(
        load_recipe(write_recipe(tmp_path, vibration_model, source, feedback)), f"sqlite:///{tmp_path / 'm.db'}"
    )
    heard: list[tuple[str, dict[str, Any]]] = []
    scada = paho.Client(CallbackAPIVersion.VERSION2, client_id="scada")
    scada.on_connect = lambda c, u, f, r, p: c.subscribe("huoyan/plant/line/spindle-1/#", qos=1)
    scada.on_message = lambda c, u, msg: heard.append((msg.topic, json.loads(msg.payload)))
    listening = threading.Event()  # messages published before the subscription is acknowledged are not kept
    scada.on_subscribe = lambda c, u, mid, codes, p: listening.set()
    scada.connect("127.0.0.1", broker.port)
    scada.loop_start()
    assert listening.wait(10)
    gateway = paho.Client(CallbackAPIVersion.VERSION2, client_id="gateway")
    gateway.connect("127.0.0.1", broker.port)
    gateway.loop_start()
    try:
        with station_thread(opened):
            # Blocks published before the station's subscription are not kept for it: wait until
            # it says it connected (it subscribes just before), then a moment for the broker.
            wait_for(
                lambda: any(
                    e["kind"] == "sensor-offline" and e["message"].endswith(": connected")
                    for e in query_events(opened.engine)
                )
            )
            time.sleep(0.5)
            start = time.time() - 10
            seq = 0
            for phase, fault in enumerate((None, "outer_race")):
                for i, t0, x in blocks(1.0, fault, 10 + phase, start + phase * 1.2):
                    if phase == 1 and i == 0:
                        seq += 3  # blocks lost on the way: a gap
                    body = {"samples": x.round(6).tolist(), "rate": RATE, "seq": seq, "t0": t0}
                    gateway.publish(topic, json.dumps(body), qos=1).wait_for_publish(5)
                    seq += 1
            gateway.publish(topic, json.dumps({"samples": [0.0] * BLOCK, "rate": 12_000, "seq": seq}), qos=1)
            wait_for(lambda: len(query_records(opened.engine)) >= 8)
            wait_for(lambda: any(e["kind"] == "sensor-rate" for e in query_events(opened.engine)))
            wait_for(lambda: sum(t.endswith("/result") for t, _ in heard) >= 8)
    finally:
        gateway.loop_stop()
        scada.loop_stop()
        broker.stop()
    # The line hears of the change of condition as an alarm, and of each window as a result.
    alarms = [m for t, m in heard if t.endswith("/alarm/condition-changed")]
    assert alarms and alarms[0]["active"] and "outer_race" in alarms[0]["message"]
    results = [m for t, m in heard if t.endswith("/result")]
    ng = [m for m in results if m["verdict"] == "NG"]
    assert len(ng) == 4 and {m["diagnosis"] for m in ng} == {"outer_race"}
    assert {"rms", "kurtosis"} <= {x["name"] for x in ng[0]["measurements"]}
    rows = query_records(opened.engine)
    healthy = [r for r in rows if r["verdict"] == "OK"]
    faulty = [r for r in rows if r["verdict"] == "NG"]
    assert len(healthy) == 4 and len(faulty) == 4
    assert {r["diagnosis"] for r in faulty} == {"outer_race"} and all(r["source_name"].startswith("DE@") for r in rows)
    first_after_gap = datetime.fromisoformat(faulty[0]["source_name"][3:].replace("Z", "+00:00"))
    assert abs(first_after_gap.timestamp() - (start + 1.2)) < 1e-3  # windows restart where the blocks did
    events = query_events(opened.engine)
    assert any(e["kind"] == "sensor-gap" and "came after" in e["message"] for e in events)
    assert any(e["kind"] == "sensor-late" for e in events)  # blocks ten seconds old
    assert any(e["kind"] == "condition-changed" and e["active"] for e in events)


# -- live: OPC UA -------------------------------------------------------------------------------
class Plc:
    """An asyncua server with an array variable a gateway writes blocks of samples to."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"opc.tcp://127.0.0.1:{self.port}/plc/"
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)

    async def _start(self) -> None:
        from asyncua import Server, ua

        self.server = Server()
        await self.server.init()
        self.server.set_endpoint(self.endpoint)
        self.server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        ns = await self.server.register_namespace("urn:test:plc")
        machine = await self.server.nodes.objects.add_object(ns, "Spindle")
        self.var = await machine.add_variable(
            ua.NodeId("Spindle.Acceleration", ns), "Acceleration", ua.Variant([0.0], ua.VariantType.Double)
        )
        self.node = f"ns={ns};s=Spindle.Acceleration"
        await self.server.start()

    def write(self, samples: np.ndarray, t0: float) -> None:
        from asyncua import ua

        stamp = datetime.fromtimestamp(t0, UTC)
        value = ua.DataValue(ua.Variant(samples.tolist(), ua.VariantType.Double), SourceTimestamp=stamp)
        asyncio.run_coroutine_threadsafe(self.var.write_value(value), self.loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.mark.slow
def test_an_opc_ua_variable_feeds_a_live_station(vibration_model: Path, tmp_path: Path) -> None:
    plc = Plc()
    source = (
        f"{{type: opcua_sensor, endpoint: '{plc.endpoint}', node: '{plc.node}', channel: DE, "
        f"sample_rate: {RATE}, publishing_ms: 20}}"
    )
    opened = open_station(
        load_recipe(write_recipe(tmp_path, vibration_model, source)), f"sqlite:///{tmp_path / 'o.db'}"
    )
    try:
        with station_thread(opened):
            wait_for(
                lambda: any(e["kind"] == "sensor-offline" and not e["active"] for e in query_events(opened.engine))
            )
            start = time.time() - 2
            for _, t0, x in blocks(1.0, "outer_race", 21, start):
                plc.write(x, t0)
                time.sleep(0.06)  # slower than the publishing interval: one block per notification
            wait_for(lambda: len(query_records(opened.engine)) >= 3)
    finally:
        plc.stop()
    rows = query_records(opened.engine)
    assert len(rows) >= 3 and {r["verdict"] for r in rows} == {"NG"}
    assert {r["diagnosis"] for r in rows} == {"outer_race"}
    first = datetime.fromisoformat(rows[0]["source_name"][3:].replace("Z", "+00:00")).timestamp()
    assert abs(first - start) < 1e-3  # the window's time is the PLC's timestamp of its first sample


def test_server_training_refuses_a_vibration_station_with_the_way_to_fit_it(
    vibration_model: Path, tmp_path: Path
) -> None:
    from types import SimpleNamespace
    from typing import cast

    from huoyan.server.training import Trainer, TrainingError
    from huoyan.store.blobs import BlobStore, file_sha256

    blobs = BlobStore(tmp_path / "blobs")
    sha = file_sha256(vibration_model)
    blobs.put_file(vibration_model, sha)
    versions = SimpleNamespace(active=lambda station: {"model_sha256": sha, "path": str(vibration_model), "version": 1})
    host = SimpleNamespace(station_id="spindle-1")
    trainer = Trainer(cast(Any, versions), cast(Any, None), lambda: {"spindle-1": cast(Any, host)}, blobs, tmp_path)
    with pytest.raises(TrainingError, match=r"learns from recordings of healthy running.*--detector vibration"):
        trainer._train({"station_id": "spindle-1", "params": {}, "id": 1})


def test_the_recipe_names_the_machine_and_the_model_must_fit_its_bearing(
    vibration_model: Path, model_file: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "recorded"
    folder.mkdir()
    np.save(folder / "outer.npy", vibration(0.5, "outer_race", 6))
    source = f"{{type: sensor_replay, path: {folder}, sample_rate: {RATE}, speed: 50}}"
    db = f"sqlite:///{tmp_path / 'r.db'}"
    other = "machine: {bearing: '6203'}\n"
    with pytest.raises(ValueError, match=r"machine\.bearing: the model was fitted for SKF 6205-2RS JEM .*not SKF 6203"):
        open_station(load_recipe(write_recipe(tmp_path, vibration_model, source, other)), db)
    with pytest.raises(ValueError, match=r"machine\.bearing: bearing '6309' is not shipped"):
        open_station(load_recipe(write_recipe(tmp_path, vibration_model, source, "machine: {bearing: '6309'}\n")), db)
    # The same bearing given by its dimensions (mm), and another ISO class for the zone.
    same = "machine: {bearing: {rolling_elements: 9, element_diameter_mm: 7.94004, pitch_diameter_mm: 39.0398}, "
    opened = open_station(
        load_recipe(write_recipe(tmp_path, vibration_model, source, same + "machine_class: II}\n")), db
    )
    run_station(opened, status=None)
    record = query_records(opened.engine)[0]
    condition = next(e for e in record["evidence"] if e["kind"] == "condition")
    assert json.loads(opened.store.blobs.get(condition["sha256"]))["iso_limits"] == [1.12, 2.8, 7.1]
    image_station = f"{{type: hot_folder, path: {tmp_path / 'in'}}}"
    with pytest.raises(ValueError, match="machine: a 'patchcore' model judges images"):
        open_station(load_recipe(write_recipe(tmp_path, model_file, image_station, other)), db)
