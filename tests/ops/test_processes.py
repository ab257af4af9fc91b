"""The compose services without Docker: every app service's command from docker-compose.yml runs as a
real process with the .env.example configuration (PostgreSQL and Redis of the machine), each one's
compose health check passes, and an object sent to the listener is ingested by the worker."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

from dosereg.registry.models import DoseObject
from tests.conftest import REPO
from tests.e2e.conftest import STORESCU, free_port, wait_port, wait_until
from tests.ops.test_compose import interpolate

pytestmark = pytest.mark.e2e


def env_example() -> dict[str, str]:
    text = (REPO / ".env.example").read_text()
    return {k: v for k, v in re.findall(r"^([A-Z][A-Z0-9_]+)=(.*)$", text, flags=re.M)}


def argv_for(cmd: list[str]) -> list[str]:
    argv = [interpolate(a) for a in cmd]
    if argv[0] == "python":
        return [sys.executable, *argv[1:]]
    return [sys.executable, "-m", argv[0], *argv[1:]]


def test_compose_services_run_as_processes_and_are_healthy(pg_url, redis_url, dcmtk, tmp_path, corpus_files):
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    web_port, dicom_port = free_port(), free_port()
    env = dict(os.environ)
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)
    env.update(env_example())
    env.update({k: str(v) for k, v in services["worker"]["environment"].items()})
    env.update({
        "DATABASE_URL": pg_url, "REDIS_URL": redis_url, "SPOOL_DIR": str(tmp_path / "spool"),
        "DOSEREG_VAR_DIR": str(tmp_path / "var"), "DICOM_PORT": str(dicom_port), "WEB_PORT": str(web_port),
        "DICOM_ALLOWED_CALLING_AES": env["DICOM_ALLOWED_CALLING_AES"] + ",OPSSCU",
        "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
        "SECRET_KEY": "test-" + "k" * 50, "SPOOL_MIN_FREE_BYTES": "0", "DB_CONN_MAX_AGE": "0",
    })
    assert env["DOSEREG_PRODUCTION"] == "true" and env["LOG_FORMAT"] == "json"

    # migrate (one-shot) must succeed before the others start
    res = subprocess.run(argv_for(services["migrate"]["command"]), cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr

    procs: dict[str, subprocess.Popen] = {}
    logs = {}
    try:
        for name in ("web", "worker", "beat", "listener"):
            argv = argv_for(services[name]["command"])
            if name == "web":
                argv[argv.index("--bind") + 1] = f"127.0.0.1:{web_port}"
            if name == "beat":
                argv[argv.index("-s") + 1] = str(tmp_path / "celerybeat-schedule")
            logs[name] = open(tmp_path / f"{name}.log", "wb")
            procs[name] = subprocess.Popen(argv, cwd=REPO, env=env, stdout=logs[name], stderr=subprocess.STDOUT)
        wait_port(web_port, timeout=60)
        wait_port(dicom_port, timeout=60)

        def dump() -> str:
            return "\n".join(f"--- {n}\n{(tmp_path / f'{n}.log').read_text(errors='replace')[-3000:]}" for n in procs)

        # each service's own compose health check, retried like Docker does
        for name in ("web", "worker", "beat", "listener"):
            test = services[name]["healthcheck"]["test"]
            assert test[0] == "CMD"
            deadline, res = time.time() + 90, None
            while time.time() < deadline:
                res = subprocess.run(argv_for(test[1:]), cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
                if res.returncode == 0:
                    break
                time.sleep(1)
            assert res is not None and res.returncode == 0, f"{name} unhealthy: {res.stdout}{res.stderr}\n{dump()}"
            report = json.loads(res.stdout)
            assert report["healthy"] is True and report["component"] == name

        f = next(p for p in corpus_files if p.name == "canon_cxdi_DX.dcm")
        res = subprocess.run([STORESCU, "-aet", "OPSSCU", "-aec", env["DICOM_AE_TITLE"], "127.0.0.1",
                              str(dicom_port), str(f)], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr + dump()
        assert wait_until(lambda: DoseObject.objects.filter(status=DoseObject.STATUS_INGESTED).exists(), 60), dump()

        req = urllib.request.Request(f"http://127.0.0.1:{web_port}/health/",
                                     headers={"Host": env["ALLOWED_HOSTS"].split(",")[0]})
        with urllib.request.urlopen(req, timeout=10) as r:  # plain HTTP although DOSEREG_PRODUCTION redirects to https
            body = json.loads(r.read())
        assert r.status == 200 and body["checks"]["broker"]["ok"] and body["checks"]["pending_objects"]["count"] == 0

        # structured logs (LOG_FORMAT=json from .env.example) in the listener's output
        listener_log = (tmp_path / "listener.log").read_text(errors="replace").splitlines()
        json_lines = [json.loads(line) for line in listener_log if line.startswith("{")]
        assert any(rec.get("logger") == "dicom_listener" for rec in json_lines), dump()
        worker_log = (tmp_path / "worker.log").read_text(errors="replace").splitlines()
        assert any(json.loads(line)["logger"].startswith("celery") for line in worker_log if line.startswith("{")), dump()
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
        for p in procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        for fh in logs.values():
            fh.close()
