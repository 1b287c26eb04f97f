"""Verdict-to-signal latency of each line-feedback channel, seen by real peers on loopback.

A station on the synthetic washer line is fed by a replay source at ``--rate`` parts/s
(10 by default) with OPC UA, Modbus, MQTT and a webhook all enabled. Four peers run in
this process beside it, each in its own thread or loop, and stamp the moment they see
each result:

- OPC UA: an asyncua client subscribed (publishing interval 0) to ``LastResult.ResultContent``,
  and with ``--opcua-events`` another to ResultReadyEventType events on the Server object
  (what a MES connector subscribes to), both reading the JSON of ``ResultContent[1]``;
- Modbus: a pymodbus client polling ResultReady every 2 ms, reading the registers and
  acknowledging, as a PLC task would;
- MQTT: a paho subscriber at QoS 1 on a private Mosquitto broker;
- webhook: a local HTTP receiver.

Latency is the peer's time of receipt minus the record's ``decided_at`` (same clock).
The station's own per-part log (``SignalTimes``) is printed beside it. No assertions:
this is a measurement. Usage: ``python bench/feedback.py [--parts 200] [--rate 10] [--json OUT]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as paho
from asyncua import Client
from paho.mqtt.enums import CallbackAPIVersion
from pymodbus.client import AsyncModbusTcpClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from huoyan.core.recipe import load_recipe
from huoyan.io import modbus as mb
from huoyan.runner import open_station
from huoyan.sampleline.generator import generate_line
from huoyan.vision.imageio import list_images, read_image
from huoyan.vision.patchcore import PatchCore
from linepeers import Mosquitto, free_port, station_thread

Seen = dict[str, list[tuple[str, float]]]  # channel -> [(record key, latency ms)]


def ms_since(decided_at: str) -> float:
    return (datetime.now(UTC) - datetime.fromisoformat(decided_at)).total_seconds() * 1000


def start_webhook(seen: Seen) -> tuple[ThreadingHTTPServer, int]:
    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen["webhook"].append((body["key"], ms_since(body["decided_at"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, port


def start_mqtt(port: int, seen: Seen) -> paho.Client:
    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-scada")
    sub.on_connect = lambda c, u, f, r, p: c.subscribe("huoyan/plant/line/bench/result", qos=1)

    def on_message(c: Any, u: Any, msg: Any) -> None:
        body = json.loads(msg.payload)
        seen["mqtt"].append((body["key"], ms_since(body["decided_at"])))

    sub.on_message = on_message
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    return sub


async def opcua_peer(url: str, seen: Seen, stop: asyncio.Event, events: bool) -> None:
    class Handler:
        def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
            if val:
                body = json.loads(val[1].Value)
                seen["opcua"].append((body["key"], ms_since(body["decided_at"])))

        def event_notification(self, event: Any) -> None:
            body = json.loads(event.ResultContent[1].Value)
            seen["opcua-event"].append((body["key"], ms_since(body["decided_at"])))

    async with Client(url) as client:
        await client.load_data_type_definitions()
        ns = await client.get_namespace_index("http://opcfoundation.org/UA/MachineVision")
        path = ["bench", "ResultManagement", "Results", "LastResult", "ResultContent"]
        node = await client.nodes.objects.get_child([f"{ns}:{p}" for p in path])
        sub = await client.create_subscription(0, Handler())
        await sub.subscribe_data_change(node)
        if events:
            on_server = await client.create_subscription(0, Handler())
            await on_server.subscribe_events(client.nodes.server, client.get_node(f"ns={ns};i=1024"))
        await stop.wait()


async def modbus_peer(port: int, seen: Seen, stop: asyncio.Event) -> None:
    client = AsyncModbusTcpClient("127.0.0.1", port=port)
    await client.connect()
    while not stop.is_set():
        bits = (await client.read_discrete_inputs(0, count=8, device_id=1)).bits
        if bits[mb.RESULT_READY]:
            t = time.time()
            regs = (await client.read_input_registers(0, count=10, device_id=1)).registers
            seq = regs[mb.SEQ_HI] << 16 | regs[mb.SEQ_LO]
            seen["modbus_seq"].append((str(seq), t))
            await client.write_coil(mb.RESULT_ACK, True, device_id=1)
        await asyncio.sleep(0.002)
    client.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", type=int, default=200)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--opcua-events", action="store_true", help="also subscribe to ResultReady events")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="huoyan-bench-feedback-"))
    generate_line(work / "line", products=("washer",), n_train=40, n_test_good=20, n_test_defect=10, size=224, seed=1)
    images = [read_image(p) for p in list_images(work / "line" / "washer" / "train" / "good")]
    PatchCore(image_size=224, seed=0).fit(images).save(work / "washer.safetensors")
    broker = Mosquitto(work / "broker")
    broker.start()
    seen: Seen = {"opcua": [], "opcua-event": [], "modbus_seq": [], "mqtt": [], "webhook": []}
    hook, hook_port = start_webhook(seen)
    sub = start_mqtt(broker.port, seen)
    ua_port, mb_port = free_port(), free_port()
    (work / "recipe.yaml").write_text(
        f"""station: bench
product: washer
recipe: washer-top
version: "1"
source: {{type: replay, path: {work / "line" / "washer" / "test"}, rate: {args.rate}, loop: true}}
model: washer.safetensors
feedback:
  opcua: {{endpoint: "opc.tcp://127.0.0.1:{ua_port}/huoyan/", anonymous: true, security: [none]}}
  modbus: {{host: 127.0.0.1, port: {mb_port}}}
  mqtt: {{host: 127.0.0.1, port: {broker.port}}}
  webhook: {{url: "http://127.0.0.1:{hook_port}/hook"}}
"""
    )
    opened = open_station(load_recipe(work / "recipe.yaml"))
    decided: dict[int, float] = {}
    opened.station.listeners.insert(0, lambda r: decided.__setitem__(r.seq or 0, r.decided_at.timestamp()))

    async def peers(stop: asyncio.Event) -> None:
        await asyncio.gather(
            opcua_peer(f"opc.tcp://127.0.0.1:{ua_port}/huoyan/", seen, stop, args.opcua_events),
            modbus_peer(mb_port, seen, stop),
        )

    with station_thread(opened, ua_port):
        stop = asyncio.Event()
        loop = asyncio.new_event_loop()
        runner = threading.Thread(target=loop.run_until_complete, args=(peers(stop),), daemon=True)
        runner.start()
        time.sleep(args.parts / args.rate + 2)
        loop.call_soon_threadsafe(stop.set)
        runner.join(10)
    sub.loop_stop()
    hook.shutdown()
    broker.stop()
    seen["modbus"] = [(s, (t - decided[int(s)]) * 1000) for s, t in seen.pop("modbus_seq") if int(s) in decided]
    station_side = opened.feedback.times.summary() if opened.feedback else {}
    rows = {}
    for channel in ("opcua", *(["opcua-event"] if args.opcua_events else []), "modbus", "mqtt", "webhook"):
        lat = np.array([ms for _, ms in seen[channel]]) if seen[channel] else np.array([np.nan])
        rows[channel] = {
            "parts": len(seen[channel]),
            "peer_p50_ms": round(float(np.nanpercentile(lat, 50)), 2),
            "peer_p99_ms": round(float(np.nanpercentile(lat, 99)), 2),
            "station_p50_ms": station_side.get(channel.removesuffix("-event"), {}).get("p50_ms"),
            "station_p99_ms": station_side.get(channel.removesuffix("-event"), {}).get("p99_ms"),
        }
    print(f"{'channel':11} {'parts':>6} {'peer p50':>9} {'peer p99':>9} {'station p50':>12} {'station p99':>12}")
    for channel, r in rows.items():
        print(
            f"{channel:11} {r['parts']:6d} {r['peer_p50_ms']:9.2f} {r['peer_p99_ms']:9.2f} "
            f"{r['station_p50_ms']!s:>12} {r['station_p99_ms']!s:>12}"
        )
    if args.json:
        args.json.write_text(json.dumps({"rate": args.rate, "decided": len(decided), "channels": rows}, indent=2))


if __name__ == "__main__":
    main()
