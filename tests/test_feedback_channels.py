"""MQTT, webhook and Modbus channels against real peers: Mosquitto, an HTTP receiver, pymodbus's client."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import jsonschema
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pymodbus.client import AsyncModbusTcpClient

from huoyan.core.control import RecipeInfo, RecipeSwitchError
from huoyan.core.models import Verdict
from huoyan.core.recipe import ModbusFeedback, MqttFeedback, WebhookFeedback
from huoyan.core.records import InspectionRecord
from huoyan.io import modbus as mb
from huoyan.io.feedback import LineFeedback, SignalTimes
from huoyan.io.message import SCHEMA_FILE, ResultMessage, result_json_schema
from huoyan.io.modbus import ModbusChannel
from huoyan.io.mqtt import MqttChannel
from huoyan.io.webhook import SIGNATURE_HEADER, WebhookChannel, verify
from linepeers import Mosquitto, free_port, until, wait_for_port


def record(seq: int, verdict: Verdict = Verdict.OK, trigger: dict[str, Any] | None = None) -> InspectionRecord:
    now = datetime.now(UTC)
    return InspectionRecord(
        key=f"st-1:test:{seq}",
        seq=seq,
        station_id="st-1",
        recipe_id="washer-top",
        recipe_version="1",
        model_sha256="ab" * 32,
        threshold=2.0,
        part_id=f"P{seq}",
        source_name=f"{seq}.png",
        verdict=verdict,
        score=1.0,
        normalised_score=0.5 if verdict == Verdict.OK else 1.5,
        arrived_at=now,
        decided_at=now,
        latency_ms=1.0,
        trigger=trigger,
    )


def test_result_schema_file_is_the_model_and_validates_messages() -> None:
    assert json.loads(SCHEMA_FILE.read_text()) == result_json_schema()
    message = ResultMessage.from_record(record(1), "p", "l").to_json()
    jsonschema.validate(message, result_json_schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**message, "verdict": "MAYBE"}, result_json_schema())


# -- MQTT ---------------------------------------------------------------------------------


def test_mqtt_results_survive_a_broker_restart_exactly_once_in_order(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    cfg = MqttFeedback(host="127.0.0.1", port=broker.port)
    received: list[dict[str, Any]] = []
    statuses: list[dict[str, Any]] = []
    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id="scada", clean_session=False)
    sub.on_connect = lambda c, u, f, r, p: c.subscribe("huoyan/plant/line/st-1/#", qos=1)

    def on_message(c: Any, u: Any, msg: Any) -> None:
        body = json.loads(msg.payload)
        (received if msg.topic.endswith("/result") else statuses).append(body)

    sub.on_message = on_message
    sub.reconnect_delay_set(min_delay=1, max_delay=2)
    listening = threading.Event()  # results published before the subscription is acknowledged are not kept
    sub.on_subscribe = lambda c, u, mid, codes, p: listening.set()
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    assert listening.wait(10)
    times = SignalTimes()
    channel = MqttChannel(cfg, "st-1", "plant", "line", tmp_path / "outbox", times)

    async def run() -> None:
        feedback = LineFeedback("plant", "line", [channel], times)
        await feedback.start()
        for seq in range(1, 11):
            feedback.on_record(record(seq))
            await asyncio.sleep(0.02)
        await until(lambda: len(received) >= 10)
        broker.stop()
        for seq in range(11, 31):  # the broker is down: these wait on disk
            feedback.on_record(record(seq))
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        assert len(channel.outbox) > 0
        broker.start()
        try:
            await until(lambda: len(received) >= 30, timeout=30)
        except TimeoutError:
            raise AssertionError(f"received {[m['seq'] for m in received]}, outbox {len(channel.outbox)}") from None
        await feedback.stop()

    try:
        asyncio.run(run())
    finally:
        sub.loop_stop()
        broker.stop()
    seqs = [m["seq"] for m in received]
    assert seqs == list(range(1, 31))  # every part once, in order, through the outage
    assert all(m["schema"] == "huoyan.result/1" for m in received)
    assert len(channel.outbox) == 0 and not list((tmp_path / "outbox").glob("*.json"))
    assert times.summary()["mqtt"]["n"] == 30
    assert any(s.get("online") is True for s in statuses)


# -- webhook ------------------------------------------------------------------------------


class Receiver(BaseHTTPRequestHandler):
    fail_first = 3
    calls = 0
    bodies: ClassVar[list[tuple[bytes, str | None]]] = []
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with Receiver.lock:
            Receiver.calls += 1
            failing = Receiver.calls <= Receiver.fail_first
            if not failing:
                Receiver.bodies.append((body, self.headers.get(SIGNATURE_HEADER)))
        self.send_response(503 if failing else 204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_webhook_retries_until_accepted_and_signs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUOYAN_TEST_HOOK_SECRET", "k3y")
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    wait_for_port(port)
    cfg = WebhookFeedback(url=f"http://127.0.0.1:{port}/hook", secret_env="HUOYAN_TEST_HOOK_SECRET", max_backoff_s=0.5)
    times = SignalTimes()
    channel = WebhookChannel(cfg, "st-1", tmp_path / "outbox", times)

    async def run() -> None:
        await channel.start()
        for seq in range(1, 6):
            channel.result(record(seq), ResultMessage.from_record(record(seq), "p", "l").to_json())
        await until(lambda: len(Receiver.bodies) >= 5)
        await channel.stop()

    try:
        asyncio.run(run())
    finally:
        server.shutdown()
    assert Receiver.calls == 5 + Receiver.fail_first
    assert [json.loads(b)["seq"] for b, _ in Receiver.bodies] == [1, 2, 3, 4, 5]
    assert all(verify(b"k3y", body, sig) for body, sig in Receiver.bodies)
    assert not verify(b"other", *Receiver.bodies[0])
    assert len(channel.outbox) == 0


def test_webhook_rejection_is_set_aside_not_retried_forever(tmp_path: Path) -> None:
    class Refuse(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(400)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    channel = WebhookChannel(WebhookFeedback(url=f"http://127.0.0.1:{port}/"), "st-1", tmp_path / "ob", SignalTimes())

    async def run() -> None:
        await channel.start()
        channel.result(record(1), ResultMessage.from_record(record(1), "p", "l").to_json())
        await until(lambda: len(channel.outbox) == 0 and any((tmp_path / "ob" / "rejected").glob("*.json")))
        await channel.stop()

    try:
        asyncio.run(run())
    finally:
        server.shutdown()


# -- Modbus -------------------------------------------------------------------------------


class FakeLine:
    """A station stand-in that answers each trigger with a result, like a triggered camera."""

    def __init__(self) -> None:
        self.channel: ModbusChannel | None = None
        self.triggers: list[dict[str, Any]] = []
        self.seq = 0
        self.recipe = RecipeInfo(1, "washer-top", "1", "washer", "00" * 32, "ab" * 32)

    @property
    def triggerable(self) -> bool:
        return True

    def trigger(self, payload: dict[str, Any]) -> None:
        self.triggers.append(payload)
        self.seq += 1
        verdict = Verdict.NG if self.seq % 2 == 0 else Verdict.OK
        rec = record(self.seq, verdict, trigger=payload)
        assert self.channel is not None
        asyncio.get_running_loop().call_later(0.02, self.channel.result, rec, {})

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def active_recipe(self) -> RecipeInfo:
        return self.recipe

    def recipes(self) -> list[RecipeInfo]:
        return [self.recipe, RecipeInfo(2, "washer-bottom", "1", "washer", "11" * 32, "ab" * 32)]

    async def prepare_recipe(self, key: str | int) -> RecipeInfo:
        if key != 2:
            raise RecipeSwitchError("unknown")
        await asyncio.sleep(0.05)
        self.recipe = self.recipes()[1]
        return self.recipe


def test_modbus_trigger_result_acknowledge_and_a_slow_plc() -> None:
    port = free_port()
    line = FakeLine()
    times = SignalTimes()
    channel = ModbusChannel(ModbusFeedback(host="127.0.0.1", port=port, device_id=1), line, times)
    line.channel = channel

    async def plc() -> None:
        await channel.start()
        client = AsyncModbusTcpClient("127.0.0.1", port=port)
        await client.connect()
        try:
            di = lambda: client.read_discrete_inputs(0, count=8, device_id=1)  # noqa: E731
            ir = lambda: client.read_input_registers(0, count=10, device_id=1)  # noqa: E731

            async def wait_bit(bit: int, value: bool) -> None:
                await until(lambda: _bit(di(), bit, value))

            assert (await di()).bits[mb.READY]
            # One full handshake: part number, trigger, result ready, read, acknowledge.
            await client.write_registers(mb.PART_HI, [0, 4711], device_id=1)
            await client.write_coil(mb.TRIGGER, True, device_id=1)
            await wait_bit(mb.RESULT_READY, True)
            regs = (await ir()).registers
            assert regs[mb.RESULT_CODE] == 1 and regs[mb.SEQ_LO] == 1 and regs[mb.RPART_LO] == 4711
            assert (await di()).bits[mb.OK] and not (await di()).bits[mb.NG]
            assert line.triggers[0]["part_id"] == "4711" and "lot" not in line.triggers[0]
            await client.write_coil(mb.RESULT_ACK, True, device_id=1)
            await wait_bit(mb.RESULT_READY, False)

            # A slow PLC: three results pile up unacknowledged; none is lost or reordered.
            for _ in range(3):
                await wait_bit(mb.READY, True)
                await client.write_coil(mb.TRIGGER, True, device_id=1)
                await wait_bit(mb.BUSY, False)
            assert (await ir()).registers[mb.PENDING] == 3
            seen = []
            for _ in range(3):
                regs = (await ir()).registers
                seen.append((regs[mb.SEQ_LO], regs[mb.RESULT_CODE]))
                await client.write_coil(mb.RESULT_ACK, True, device_id=1)
            assert seen == [(2, 2), (3, 1), (4, 2)]
            assert not (await di()).bits[mb.RESULT_READY]

            # The lot: written once, carried by every later trigger until changed.
            await client.write_registers(mb.LOT_HI, [1, 2607], device_id=1)
            for _ in range(2):
                await wait_bit(mb.READY, True)
                await client.write_coil(mb.TRIGGER, True, device_id=1)
                await wait_bit(mb.BUSY, False)
                await client.write_coil(mb.RESULT_ACK, True, device_id=1)
            assert [t["lot"] for t in line.triggers[-2:]] == [str((1 << 16) | 2607)] * 2

            # Recipe switch by index; an unknown index is reported, not fatal.
            await client.write_register(mb.RECIPE_REQUEST, 2, device_id=1)
            await until(lambda: _reg(ir(), mb.ACTIVE_RECIPE, 2))
            await client.write_register(mb.RECIPE_REQUEST, 9, device_id=1)
            await until(lambda: _reg(ir(), mb.RECIPE_STATUS, 2))
            await client.write_coil(mb.ERROR_RESET, True, device_id=1)
            await until(lambda: _reg(ir(), mb.RECIPE_STATUS, 0))
        finally:
            client.close()
            await channel.stop()

    asyncio.run(plc())
    assert times.summary()["modbus"]["n"] == 6


async def _bit(read: Any, bit: int, value: bool) -> bool:
    return bool((await read).bits[bit]) == value


async def _reg(read: Any, index: int, value: int) -> bool:
    return int((await read).registers[index]) == value
