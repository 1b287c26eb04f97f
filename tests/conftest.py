"""Shared fixtures: a small synthetic line and a model fitted on it, built once."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from huoyan.sampleline.generator import generate_line, make_sample
from huoyan.vision.imageio import list_images, read_image
from huoyan.vision.patchcore import PatchCore


@pytest.fixture(scope="session")
def line_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("line")
    generate_line(out, products=("washer",), n_train=16, n_test_good=6, n_test_defect=2, size=128, seed=3)
    return out / "washer"


@pytest.fixture(scope="session")
def fitted(line_dir: Path) -> PatchCore:
    images = [read_image(p) for p in list_images(line_dir / "train" / "good")]
    return PatchCore(image_size=128, coreset_ratio=0.25, seed=0).fit(images)


@pytest.fixture()
def defect_sample() -> tuple[np.ndarray, np.ndarray]:
    return make_sample("washer", "hole", 128, np.random.default_rng(99))


# -- databases: SQLite always, PostgreSQL from a throwaway server this session starts ----


class PostgresServer:
    """A private PostgreSQL cluster on loopback, started from the system's binaries.

    PostgreSQL refuses to run as root, so as root the cluster belongs to the
    ``postgres`` user (created by Debian's package) and its commands run through runuser.
    """

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="huoyan-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            self._as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        self._counter = 0

    def _run(self, tool: str, *args: str) -> None:
        cmd = [*self._as_user, str(self.bindir / tool), *args]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"), "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        import psycopg

        self._counter += 1
        name = f"huoyan_test_{self._counter}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def cleanup(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _postgres_bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return candidates[-1].parent if candidates else None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = _postgres_bindir()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed; .ci/run installs it")
        pytest.skip("PostgreSQL binaries not found (apt-get install postgresql)")
    server = PostgresServer(bindir)
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'records.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.new_database()


@pytest.fixture(scope="session")
def model_file(fitted: PatchCore, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fitted.save(tmp_path_factory.mktemp("model") / "washer.safetensors")


@pytest.fixture()
def served(db_url: str, model_file: Path, tmp_path: Path) -> Iterator[tuple[object, object, object]]:
    """A server hosting one HTTP-source station ``cell-1``, on each database: (client, platform, keys)."""
    from fastapi.testclient import TestClient

    from serverkit import make_platform_app, write_recipe

    recipe = write_recipe(tmp_path, "cell-1", model_file, "http")
    app, p, keys = make_platform_app(db_url, tmp_path, [recipe])
    with TestClient(app) as client:
        yield client, p, keys
