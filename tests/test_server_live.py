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
