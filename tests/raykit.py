"""A real two-node Ray cluster on this machine, started by the tests: ``ray start --head``
and a second node joining it, one CPU each, token authentication on, stopped afterwards."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from linepeers import free_port

RAY = str(Path(sys.executable).with_name("ray"))


def ray_env(token_file: Path, temp: Path) -> dict[str, str]:
    """What the nodes, the drivers and ``huoyan batch`` need to reach the cluster."""
    return {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token_file),
        "RAY_TMPDIR": str(temp),
        "RAY_USAGE_STATS_ENABLED": "0",
    }


@contextmanager
def two_node_cluster(folder: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """(address, environment) of a cluster of two one-CPU nodes on loopback."""
    token = folder / "ray-token"
    token.write_text(secrets.token_hex(32))
    temp = Path("/tmp") / f"ray-{secrets.token_hex(3)}"  # Ray's socket paths must stay short
    env = ray_env(token, temp)
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    try:
        subprocess.run(
            [RAY, "start", "--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}", *common],
            env=env, check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        subprocess.run(
            [RAY, "start", f"--address={address}", *common], env=env, check=True, capture_output=True, timeout=120
        )
        _wait_for_nodes(address, env, 2)
        yield address, env
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)


def _wait_for_nodes(address: str, env: dict[str, str], n: int, timeout_s: float = 90.0) -> None:
    probe = (
        "import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
        "print(sum(1 for x in ray.nodes() if x['Alive']))"
    )
    deadline = time.monotonic() + timeout_s
    while True:
        out = subprocess.run([sys.executable, "-c", probe, address], env=env, capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip().splitlines()[-1:] == [str(n)]:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Ray cluster did not come up with {n} nodes: {out.stdout} {out.stderr[-2000:]}")
        time.sleep(1.0)
