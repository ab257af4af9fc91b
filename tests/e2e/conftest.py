"""Real processes for end-to-end tests: listener and Celery worker as subprocesses,
PostgreSQL and Redis as they run on the machine, DCMTK's storescu as the sender."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from tests.conftest import REPO, require

STORESCU = "/usr/bin/storescu"
ECHOSCU = "/usr/bin/echoscu"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {port}")


@pytest.fixture
def pg_url(transactional_db) -> str:
    s = connection.settings_dict
    require(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL)")
    user = s.get("USER") or "postgres"
    host = s.get("HOST") or "127.0.0.1"
    port = s.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{s['NAME']}"


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("DOSEREG_TEST_REDIS_URL", "")
    require(bool(url), "Redis (DOSEREG_TEST_REDIS_URL)")
    import redis

    r = redis.Redis.from_url(url)
    try:
        r.ping()
    except Exception:
        require(False, f"Redis at {url}")
    prefix = os.environ.get("BROKER_KEY_PREFIX", "")
    if prefix:  # this run's keys only: other runs may share the Redis database
        for key in r.scan_iter(match=prefix + "*", count=1000):
            r.delete(key)
    else:
        r.flushdb()
    return url


@pytest.fixture
def dcmtk() -> None:
    require(os.path.exists(STORESCU), "DCMTK storescu (/usr/bin/storescu)")


def end_other_sessions() -> None:
    """Killed processes can leave a server session idle in a transaction (a socket half-closed behind
    a proxy, a -9'd worker); the test database's flush at teardown would wait on its locks forever."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()")


class Stack:
    """A running listener + worker(s) sharing a spool, a database and a broker."""

    def __init__(self, env: dict, port: int, spool: Path, logdir: Path):
        self.env, self.port, self.spool, self.logdir = env, port, spool, logdir
        self.listener: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []

    def _spawn(self, args: list[str], name: str) -> subprocess.Popen:
        log = open(self.logdir / f"{name}.log", "ab")
        return subprocess.Popen(args, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def start_listener(self) -> None:
        self.listener = self._spawn([sys.executable, "manage.py", "run_listener", "--port", str(self.port),
                                     "--address", "127.0.0.1"], "listener")
        wait_port(self.port)

    def start_worker(self, concurrency: int = 2) -> subprocess.Popen:
        n = len(self.workers)
        w = self._spawn([sys.executable, "-m", "celery", "-A", "dosereg", "worker", "-Q", "dosereg", "-c",
                         str(concurrency), "--without-gossip", "--without-mingle", "-n", f"w{n}@%h", "-l", "INFO"],
                        f"worker{n}")
        self.workers.append(w)
        return w

    def storescu(self, files, calling_ae: str = "MODALITY1", extra: list[str] | None = None, timeout: float = 300):
        env = dict(os.environ, TCP_NODELAY="1")
        args = [STORESCU, "-aet", calling_ae, "-aec", "DOSEREG", *(extra or []), "127.0.0.1", str(self.port),
                *[str(f) for f in files]]
        return subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)

    def stop(self) -> None:
        for p in [self.listener, *self.workers]:
            if p and p.poll() is None:
                p.terminate()
        for p in [self.listener, *self.workers]:
            if p:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()

    def logs(self) -> str:
        return "\n".join(f"--- {f.name}\n{f.read_text(errors='replace')[-4000:]}" for f in sorted(self.logdir.glob("*.log")))


@pytest.fixture
def stack(pg_url, redis_url, dcmtk, tmp_path, request):
    spool = tmp_path / "spool"
    logdir = tmp_path / "logs"
    logdir.mkdir()
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": pg_url,
        "REDIS_URL": redis_url,
        "SPOOL_DIR": str(spool),
        "DOSEREG_VAR_DIR": str(tmp_path / "var"),
        "DICOM_ALLOWED_CALLING_AES": "MODALITY1,MODALITY2",
        "SPOOL_MIN_FREE_BYTES": "0",
        "DB_CONN_MAX_AGE": "0",
    })
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)
    s = Stack(env, free_port(), spool, logdir)
    yield s
    s.stop()
    end_other_sessions()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(s.logs())


def wait_until(predicate, timeout: float = 60.0, interval: float = 0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()
