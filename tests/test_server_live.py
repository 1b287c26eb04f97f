"""The live stream over a real uvicorn server: a part uploaded appears in the SSE stream with its preview."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np

from huoyan.store.accounts import Role
from serverkit import live_server, make_platform_app, png, write_recipe


def test_sse_stream_carries_each_part_with_a_preview(
    model_file: Path, tmp_path: Path, defect_sample: tuple[np.ndarray, np.ndarray]
) -> None:
    recipe = write_recipe(tmp_path, "cell-1", model_file, "http")
    app, p, keys = make_platform_app(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, [recipe])
    headers = keys.headers(Role.OPERATOR)
    with live_server(app) as base:
        uploaded: dict[str, Any] = {}

        def send() -> None:
            r = httpx.post(
                f"{base}/api/stations/cell-1/inspect",
                files={"image": ("LIVE7.png", png(defect_sample[0]), "image/png")},
                headers=headers,
                timeout=30,
            )
            uploaded.update(r.json())

        sender = threading.Thread(target=send)
        events: list[tuple[str, dict[str, Any]]] = []
        with httpx.stream("GET", f"{base}/api/stations/cell-1/live", headers=headers, timeout=30) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            kind = ""
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    events.append((kind, json.loads(line[6:])))
                    if kind == "status" and len(events) == 1:
                        assert p.hub.watchers("cell-1") == 1
                        sender.start()
                    if kind == "part":
                        break
        part = events[-1][1]
        assert part["part_id"] == "LIVE7" and part["verdict"] == "NG" and part["regions"]
        assert part["ng_rate"] == 1.0
        preview = base64.b64decode(part["preview"].removeprefix("data:image/jpeg;base64,"))
        picture = cv2.imdecode(np.frombuffer(preview, np.uint8), cv2.IMREAD_COLOR)
        assert picture.shape[:2] == (128, 128)
        assert events[0][0] == "status" and events[0][1]["station_id"] == "cell-1"
        sender.join(30)
        assert uploaded.get("key") == part["key"]
    assert p.hub.watchers("cell-1") == 0  # the disconnect was noticed and previews stop


def test_status_reaches_the_page_every_second_while_parts_flow(
    line_dir: Path, model_file: Path, tmp_path: Path
) -> None:
    """At 5 parts/s the stream never goes quiet for a second, so a status event (counters,
    state, alarms) must still come at least once a second, not only in a pause."""
    import itertools
    import time

    from huoyan.core.recipe import load_recipe

    path = tmp_path / "busy.yaml"
    path.write_text(
        f"station: busy-1\nproduct: washer\nrecipe: washer-top\nversion: '1'\nmodel: {model_file}\n"
        f"source: {{type: replay, path: {line_dir / 'test'}, rate: 5, loop: true}}\n"
        f"storage: {{data_dir: {tmp_path / 'data'}, keep_ok_every: 0}}\n"
    )
    app, _, keys = make_platform_app(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, [load_recipe(path)])
    with live_server(app) as base:
        times: list[float] = []
        totals: list[int] = []
        parts = 0
        start = time.monotonic()
        headers = keys.headers(Role.OPERATOR)
        with httpx.stream("GET", f"{base}/api/stations/busy-1/live", headers=headers, timeout=30) as stream:
            kind = ""
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    body = json.loads(line[6:])
                    if kind == "status":
                        times.append(time.monotonic())
                        totals.append(sum(body["counts"].values()))
                    elif kind == "part":
                        parts += 1
                if time.monotonic() - start > 5:
                    break
    assert parts >= 15, parts  # the line was busy all along
    gaps = [b - a for a, b in itertools.pairwise(times[1:])]  # after the first part came
    assert len(times) >= 4 and max(gaps) < 1.5, (len(times), gaps)
    assert totals[-1] > totals[1]  # and the counters in them move
