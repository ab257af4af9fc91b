"""The DICOM listener's own defences, tested with DCMTK's storescu against the real listener:
unknown calling AE titles are rejected; optional DICOM TLS (DICOM_TLS_CERT/KEY, and DICOM_TLS_CA for
client certificates) works with a real TLS client and refuses plain and untrusted connections."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from dosereg.registry.models import DoseObject
from tests.conftest import REPO, require
from tests.e2e.conftest import STORESCU, free_port, wait_port

from . import tlscerts

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def rdsr_file(tmp_path_factory):
    from dosereg.rdsr import builder as B

    path = tmp_path_factory.mktemp("dcm") / "rdsr.dcm"
    B.write(B.build_projection_rdsr(B.ProjectionRDSRSpec(patient_id="SEC0001", events=[
        B.ProjectionEventSpec(dap_gy_cm2=1.2, dose_rp_gy=0.01)])), path)
    return path


def _uid(path) -> str:
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def _finished(uid: str, timeout_s: float = 60.0) -> DoseObject:
    """The listener answers before its in-process worker ingests: the object once it left "received"."""
    deadline = time.monotonic() + timeout_s
    obj = DoseObject.objects.get(sop_instance_uid=uid)
    while obj.status == DoseObject.STATUS_RECEIVED and time.monotonic() < deadline:
        time.sleep(0.05)
        obj.refresh_from_db()
    return obj


@pytest.fixture
def pki(tmp_path):
    ca = tlscerts.CA(tmp_path / "pki")
    rogue = tlscerts.CA(tmp_path / "rogue", name="rogue CA")
    return {"ca": ca, "server": ca.issue("listener", server=True), "client": ca.issue("modality", server=False),
            "rogue_client": rogue.issue("intruder", server=False), "rogue": rogue}


@pytest.fixture
def start(tmp_path, settings):
    """start(tls=...) -> port: the real listener, in-process, tasks eager, allow-list SECSCU only."""
    require(os.path.exists(STORESCU), "DCMTK storescu (/usr/bin/storescu)")
    from dicom_listener.server import start_listener
    from dosereg.celery import app

    settings.SPOOL_MIN_FREE_BYTES = 0
    settings.CELERY_TASK_ALWAYS_EAGER = True
    eager, app.conf.task_always_eager = app.conf.task_always_eager, True
    servers = []

    def _start(*, cert=None, key=None, ca=None):
        settings.DICOM_TLS_CERT = str(cert or "")
        settings.DICOM_TLS_KEY = str(key or "")
        settings.DICOM_TLS_CA = str(ca or "")
        port = free_port()
        server, _ = start_listener(port=port, address="127.0.0.1", spool_dir=tmp_path / "spool", allowed=["SECSCU"])
        servers.append(server)
        return port

    yield _start
    for s in servers:
        s.shutdown()
    app.conf.task_always_eager = eager


def storescu(port, files, *, aet="SECSCU", tls=None, timeout=60):
    args = [STORESCU, "-aet", aet, "-aec", "DOSEREG", "-to", "10", "-ts", "15", "-ta", "10", "-td", "10", *(tls or []),
            "127.0.0.1", str(port), *map(str, files)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def tls_args(client: tlscerts.Issued | None, ca: tlscerts.CA | None):
    args = ["+tls", str(client.key), str(client.cert)] if client else ["+tla"]
    if ca is not None:
        args += ["+cf", str(ca.pem)]
    return args + ["-pw"]  # unencrypted key: no password prompt


def test_unknown_calling_ae_titles_are_rejected(start, rdsr_file):
    port = start()
    for intruder in ("INTRUDER", "STORESCU", "storescu", "SECSCU2", "ANY-SCP"):
        code, out = storescu(port, [rdsr_file], aet=intruder)
        assert code != 0 and "Association Rejected" in out, (intruder, out)
        assert "Calling AE Title Not Recognized" in out or "calling-ae-title-not-recognized" in out.lower(), out
    assert not DoseObject.objects.exists()
    code, out = storescu(port, [rdsr_file])
    assert code == 0, out
    assert _finished(_uid(rdsr_file)).status == DoseObject.STATUS_INGESTED


def test_listener_requires_the_configured_calling_aes(settings):
    from dicom_listener.server import build_ae

    ae = build_ae()
    assert sorted(ae.require_calling_aet) == sorted(settings.DICOM_ALLOWED_CALLING_AES)
    assert "*" not in settings.DICOM_ALLOWED_CALLING_AES


def test_tls_listener_stores_what_a_tls_client_sends_and_refuses_plain_tcp(start, pki, rdsr_file):
    port = start(cert=pki["server"].cert, key=pki["server"].key)
    code, out = storescu(port, [rdsr_file], tls=tls_args(pki["client"], pki["ca"]))
    assert code == 0, out
    obj = _finished(_uid(rdsr_file))
    assert obj.status == DoseObject.STATUS_INGESTED
    # plain DICOM to the TLS port: no association, nothing stored
    DoseObject.objects.all().delete()
    code, out = storescu(port, [rdsr_file])
    assert code != 0 and "Association Accepted" not in out, out
    assert not DoseObject.objects.exists()
    # a client that does not trust our CA refuses the listener's certificate
    code, out = storescu(port, [rdsr_file], tls=tls_args(pki["client"], pki["rogue"]))
    assert code != 0 and "Association Accepted" not in out, out
    # the unknown-caller check still applies inside TLS
    code, out = storescu(port, [rdsr_file], aet="INTRUDER", tls=tls_args(pki["client"], pki["ca"]))
    assert code != 0 and "Association Rejected" in out, out


def test_tls_with_client_certificates_required(start, pki, rdsr_file):
    port = start(cert=pki["server"].cert, key=pki["server"].key, ca=pki["ca"].pem)
    code, out = storescu(port, [rdsr_file], tls=tls_args(None, pki["ca"]))  # anonymous TLS
    assert code != 0 and "Association Accepted" not in out, out
    code, out = storescu(port, [rdsr_file], tls=tls_args(pki["rogue_client"], pki["ca"]))  # cert from another CA
    assert code != 0 and "Association Accepted" not in out, out
    assert not DoseObject.objects.exists()
    code, out = storescu(port, [rdsr_file], tls=tls_args(pki["client"], pki["ca"]))
    assert code == 0, out
    assert _finished(_uid(rdsr_file)).status == DoseObject.STATUS_INGESTED


def test_a_silent_connection_does_not_stall_the_tls_listener(start, pki, rdsr_file):
    """The TLS handshake runs per association (with a timeout), not in the accept loop."""
    port = start(cert=pki["server"].cert, key=pki["server"].key)
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]  # connect, say nothing
    try:
        started = time.monotonic()
        code, out = storescu(port, [rdsr_file], tls=tls_args(pki["client"], pki["ca"]))
        assert code == 0, out
        assert time.monotonic() - started < 10
    finally:
        for s in idle:
            s.close()


def test_tls_settings_from_the_environment_reach_run_listener(pki, rdsr_file, tmp_path):
    """DICOM_TLS_* in the environment -> settings -> `manage.py run_listener` speaks TLS."""
    require(os.path.exists(STORESCU), "DCMTK storescu (/usr/bin/storescu)")
    port = free_port()
    env = dict(os.environ, DICOM_TLS_CERT=str(pki["server"].cert), DICOM_TLS_KEY=str(pki["server"].key),
               DICOM_TLS_CA=str(pki["ca"].pem), SPOOL_DIR=str(tmp_path / "spool"), SPOOL_MIN_FREE_BYTES="0",
               DOSEREG_VAR_DIR=str(tmp_path / "var"), DICOM_ALLOWED_CALLING_AES="SECSCU")
    env.pop("DATABASE_URL", None)  # the object is stored durably before any database work; none needed here
    env.pop("REDIS_URL", None)
    log = open(tmp_path / "listener.log", "wb")
    proc = subprocess.Popen([sys.executable, "manage.py", "run_listener", "--port", str(port), "--address", "127.0.0.1"],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port)
        code, out = storescu(port, [rdsr_file])
        assert code != 0, out  # plain: refused
        code, out = storescu(port, [rdsr_file], tls=tls_args(pki["client"], pki["ca"]))
        assert code == 0, out + (tmp_path / "listener.log").read_text()
        spooled = list((tmp_path / "spool" / "objects").rglob("*.dcm"))
        assert [p.name.split("__")[0] for p in spooled] == [_uid(rdsr_file)]
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(10)
    assert "TLS, client certificates required" in (tmp_path / "listener.log").read_text()


def test_half_configured_tls_is_refused_at_start(tmp_path):
    env = dict(os.environ, DICOM_TLS_CERT=str(tmp_path / "x.crt"), DJANGO_SETTINGS_MODULE="dosereg.settings")
    env.pop("DICOM_TLS_KEY", None)
    out = subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "DICOM TLS needs both DICOM_TLS_CERT and DICOM_TLS_KEY" in out.stderr


def test_health_check_speaks_tls_to_a_tls_listener(start, pki):
    from dosereg.ops.health import check_dicom, dicom_tls_client_context

    port = start(cert=pki["server"].cert, key=pki["server"].key)
    # plain DICOM gets no association from a TLS-only listener
    assert not check_dicom("127.0.0.1", port, "DOSEREG", "SECSCU", timeout=5)["ok"]
    tls = dicom_tls_client_context()
    assert tls is not None
    res = check_dicom("127.0.0.1", port, "DOSEREG", "SECSCU", timeout=5, tls=tls)
    assert res == {"ok": True, "echo_status": 0}  # a real C-ECHO over TLS
    res = check_dicom("127.0.0.1", port, "DOSEREG", "HEALTHCHECK", timeout=5, tls=tls)
    assert res["ok"] and "rejected" in res["note"]  # not on the allow-list, but answering


def test_health_check_with_client_certificates_required(start, pki, settings):
    from dosereg.ops.health import check_dicom, dicom_tls_client_context

    port = start(cert=pki["server"].cert, key=pki["server"].key, ca=pki["ca"].pem)
    # a client certificate issued by the CA the listener trusts: a real C-ECHO over mutual TLS
    settings.DICOM_TLS_HEALTH_CERT, settings.DICOM_TLS_HEALTH_KEY = str(pki["client"].cert), str(pki["client"].key)
    assert check_dicom("127.0.0.1", port, "DOSEREG", "SECSCU", timeout=5, tls=dicom_tls_client_context()) == \
        {"ok": True, "echo_status": 0}
    # one it does not trust (another CA): refused, which still proves the listener is answering
    settings.DICOM_TLS_HEALTH_CERT, settings.DICOM_TLS_HEALTH_KEY = str(pki["rogue_client"].cert), str(pki["rogue_client"].key)
    res = check_dicom("127.0.0.1", port, "DOSEREG", "SECSCU", timeout=5, tls=dicom_tls_client_context())
    assert res["ok"] and res["tls"] and "refused" in res["note"], res
    # nothing listening: not healthy
    assert not check_dicom("127.0.0.1", free_port(), "DOSEREG", "SECSCU", timeout=2, tls=dicom_tls_client_context())["ok"]
