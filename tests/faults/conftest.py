"""Fault-injection rig: a private Redis we can kill, a TCP proxy in front of PostgreSQL we can cut,
a real listener and Celery worker (with beat running the sweeper every 2 s), and a sender that
behaves like a modality (retries what was not acknowledged with Success)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pynetdicom import AE, build_context

from tests.conftest import require
from tests.e2e.conftest import Stack, dcmtk, end_other_sessions, free_port, pg_url, wait_port  # noqa: F401 (fixtures)


class PrivateRedis:
    """A Redis of our own (nothing on disk), so killing it harms no one else."""

    def __init__(self):
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def kill(self) -> None:
        if self.proc:
            self.proc.kill()
            self.proc.wait()


class TcpProxy:
    """Forwards a local port to PostgreSQL; ``down()`` drops every connection and refuses new ones."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.port = free_port()
        self.target = (target_host, target_port)
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server: socket.socket | None = None
        self.up()

    def up(self) -> None:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(64)
        self._server = srv
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()

    def down(self) -> None:
        srv, self._server = self._server, None
        if srv:
            srv.close()
        with self._lock:
            for c in self._conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()
            self._conns.clear()

    def _accept(self, srv: socket.socket) -> None:
        while True:
            try:
                client, _ = srv.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._server is not srv:  # down() ran meanwhile: this connection must not outlive it
                    client.close()
                    upstream.close()
                    return
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass


@dataclass
class Sender:
    """A modality: sends each dataset until it is acknowledged with Success, reconnecting after failures."""

    port: int
    datasets: list
    calling_ae: str = "FAULTSCU"
    statuses: dict[str, list[int]] = field(default_factory=dict)
    acked: list[str] = field(default_factory=list)
    pause_s: float = 0.02

    def run(self, deadline_s: float = 240.0) -> None:
        pending = list(self.datasets)
        stop = time.time() + deadline_s
        while pending and time.time() < stop:
            ae = AE(ae_title=self.calling_ae)
            ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 15
            ae.requested_contexts = [build_context(uid) for uid in sorted({str(d.SOPClassUID) for d in self.datasets})]
            try:
                assoc = ae.associate("127.0.0.1", self.port, ae_title="DOSEREG")
            except Exception:
                time.sleep(0.5)
                continue
            if not assoc.is_established:
                time.sleep(0.5)
                continue
            while pending and assoc.is_established:
                ds = pending[0]
                uid = str(ds.SOPInstanceUID)
                try:
                    rsp = assoc.send_c_store(ds)
                except Exception:
                    break
                status = int(getattr(rsp, "Status", -1)) if rsp else -1
                self.statuses.setdefault(uid, []).append(status)
                if status == 0:
                    self.acked.append(uid)
                    pending.pop(0)
                    time.sleep(self.pause_s)
                else:
                    time.sleep(0.5)  # failure status or no response: keep it and retry later
                    break
            if assoc.is_established:
                assoc.release()

    def start(self) -> threading.Thread:
        t = threading.Thread(target=self.run, daemon=True)
        t.start()
        return t

    def wait_acked(self, n: int, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while len(self.acked) < n and time.time() < deadline:
            time.sleep(0.05)

    def refused(self) -> Counter:
        return Counter(s for statuses in self.statuses.values() for s in statuses if s != 0)


@pytest.fixture
def fault_stack(pg_url, dcmtk, tmp_path, request):
    """Listener + worker (+ beat) on a private Redis and a cuttable PostgreSQL proxy."""
    require(bool(subprocess.run(["which", "redis-server"], capture_output=True).stdout), "redis-server")
    redis = PrivateRedis()
    redis.start()
    from django.db import connection

    proxy = TcpProxy(int(connection.settings_dict.get("PORT") or 5432))
    db_url = pg_url.replace(f":{connection.settings_dict.get('PORT') or 5432}/", f":{proxy.port}/")
    from aiosmtpd.controller import Controller

    from tests.notifications.smtp import RecordingHandler

    smtp = RecordingHandler()
    smtp_port = free_port()
    controller = Controller(smtp, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    spool = tmp_path / "spool"
    logdir = tmp_path / "logs"
    logdir.mkdir()
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": db_url, "REDIS_URL": redis.url, "SPOOL_DIR": str(spool),
        "DOSEREG_VAR_DIR": str(tmp_path / "var"), "DICOM_ALLOWED_CALLING_AES": "FAULTSCU",
        "SPOOL_MIN_FREE_BYTES": "0", "DB_CONN_MAX_AGE": "0", "SWEEP_INTERVAL_S": "2", "SWEEP_STALE_AFTER_S": "5",
        "EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(smtp_port),
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
    })
    stack = Stack(env, free_port(), spool, logdir)
    stack.redis, stack.proxy, stack.smtp = redis, proxy, smtp
    yield stack
    for w in stack.workers:
        kill9_group(w)
    stack.stop()
    proxy.down()
    redis.kill()
    controller.stop()
    end_other_sessions()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(stack.logs())


def start_worker_with_beat(stack) -> subprocess.Popen:
    import sys

    n = len(stack.workers)
    log = open(stack.logdir / f"worker{n}.log", "ab")
    celery = " ".join([sys.executable, "-m", "celery", "-A", "dosereg", "worker", "-B", "-Q", "dosereg", "-c", "2",
                       "--without-gossip", "--without-mingle", "-n", f"w{n}@%h", "-l", "INFO",
                       "-s", str(stack.logdir / f"beat{n}")])
    # Like docker compose's `restart: unless-stopped` (or systemd Restart=always): a worker that exits is
    # started again. Celery/kombu can exit when the broker vanishes mid-connection (kombu restore_unacked).
    w = subprocess.Popen(["bash", "-c", f"while :; do {celery}; echo 'worker exited; restarting'; sleep 1; done"],
                         cwd=Path(__file__).resolve().parents[2], env=stack.env, stdout=log, stderr=subprocess.STDOUT,
                         start_new_session=True)
    stack.workers.append(w)
    return w


def kill9_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
