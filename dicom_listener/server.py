"""The DICOM listener: Storage SCP + Verification SCP with a calling-AE allow-list.

The C-STORE handler parses nothing. It writes the encoded object durably,
records it, hands its id to ``dispatch`` (the ingest queue), and answers Success.
If the object cannot be stored durably it answers Out of Resources (0xA700)
so that the modality keeps it and retries.

``dispatch`` is ``registry.services.enqueue_ingest`` (the Celery task
``dosereg.ingest_object``) with a broker; in the embedded default (no broker,
tasks eager) it is ``dosereg.pipeline.worker.InProcessWorker.submit``: one
thread of this process ingests, so the answer never waits for parsing,
alerts or e-mail.
"""
from __future__ import annotations

import logging
import socket
import ssl
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import close_old_connections, connection
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.sop_class import Verification

from .spool import Spool, SpoolError

log = logging.getLogger("dicom_listener")

# Status codes (PS3.4 Annex B / PS3.7 C)
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000

ACCEPTED_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.88.67": "X-Ray Radiation Dose SR",
    "1.2.840.10008.5.1.4.1.1.88.76": "Enhanced X-Ray Radiation Dose SR",
    "1.2.840.10008.5.1.4.1.1.88.68": "Radiopharmaceutical Radiation Dose SR",
    "1.2.840.10008.5.1.4.1.1.88.73": "Patient Radiation Dose SR",
    "1.2.840.10008.5.1.4.1.1.88.22": "Enhanced SR",
    "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR",
    "1.2.840.10008.5.1.4.1.1.88.34": "Comprehensive 3D SR",
    "1.2.840.10008.5.1.4.1.1.2": "CT Image",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image",
    "1.2.840.10008.5.1.4.1.1.1": "Computed Radiography Image",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image - For Processing",
    "1.2.840.10008.5.1.4.1.1.1.2": "Digital Mammography X-Ray Image - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.2.1": "Digital Mammography X-Ray Image - For Processing",
    "1.2.840.10008.5.1.4.1.1.12.1": "X-Ray Angiographic Image",
    "1.2.840.10008.5.1.4.1.1.12.1.1": "Enhanced XA Image",
    "1.2.840.10008.5.1.4.1.1.12.2": "X-Ray Radiofluoroscopic Image",
    "1.2.840.10008.5.1.4.1.1.12.2.1": "Enhanced XRF Image",
    "1.2.840.10008.5.1.4.1.1.13.1.1": "X-Ray 3D Angiographic Image",
    "1.2.840.10008.5.1.4.1.1.4": "MR Image",
    "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR Image",
}


@dataclass
class ListenerStats:
    stored: int = 0
    refused: int = 0
    ack_latencies_s: list[float] = field(default_factory=list)


TLS_HANDSHAKE_TIMEOUT_S = 15.0


class _ServerTLSContext(ssl.SSLContext):
    """Server-side TLS whose handshake runs in the association's own thread (see ``_on_conn_open``).

    pynetdicom wraps accepted sockets in its accept loop; with the default
    handshake-on-wrap one caller that connects and stays silent would stall
    every other caller.
    """

    def wrap_socket(self, sock, server_side=False, do_handshake_on_connect=True, *args, **kwargs):
        return super().wrap_socket(sock, server_side, False, *args, **kwargs)


def build_ssl_context(cert: str | None = None, key: str | None = None, ca: str | None = None) -> ssl.SSLContext | None:
    """DICOM TLS (PS3.15 B.1) from settings: None unless DICOM_TLS_CERT and DICOM_TLS_KEY are set.

    With DICOM_TLS_CA the caller must present a certificate signed by that CA
    (in addition to the calling-AE allow-list).
    """
    cert = settings.DICOM_TLS_CERT if cert is None else cert
    key = settings.DICOM_TLS_KEY if key is None else key
    ca = settings.DICOM_TLS_CA if ca is None else ca
    if not cert and not key:
        return None
    if not (cert and key):
        raise ValueError("DICOM TLS needs both DICOM_TLS_CERT and DICOM_TLS_KEY")
    ctx = _ServerTLSContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # BCP 195
    ctx.load_cert_chain(cert, key)
    if ca:
        ctx.load_verify_locations(cafile=ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _on_conn_open(event) -> None:
    sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    # Nagle + delayed ACK would add 40-100 ms to every small C-STORE response.
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):  # pragma: no cover - platform without TCP_NODELAY
        pass
    if isinstance(sock, ssl.SSLSocket):
        previous = sock.gettimeout()
        sock.settimeout(TLS_HANDSHAKE_TIMEOUT_S)
        try:
            sock.do_handshake()
        except (OSError, ValueError) as exc:  # not TLS, bad or missing client certificate, timeout
            log.warning("TLS handshake with %s failed: %s", getattr(event, "address", None), exc)
            try:
                sock.close()  # the association reactor sees the closed transport and ends
            except OSError:
                pass
            return
        sock.settimeout(previous)


def _on_assoc_end(event) -> None:
    # runs in the association's thread: give back its database connection
    connection.close()


def handle_echo(event) -> int:
    return SUCCESS


def handle_store(event, spool: Spool, stats: ListenerStats, dispatch=None) -> int:
    from dosereg.registry.models import DoseObject
    from dosereg.registry.services import dose_object_register, enqueue_ingest

    started = time.perf_counter()
    request = event.request
    sop_uid = str(request.AffectedSOPInstanceUID or "").strip()
    sop_class = str(request.AffectedSOPClassUID or "").strip()
    calling_ae = event.assoc.requestor.ae_title.strip() if event.assoc else ""
    if not sop_uid:
        stats.refused += 1
        return CANNOT_UNDERSTAND
    try:
        data = event.encoded_dataset(include_meta=True)
    except Exception as exc:
        log.warning("could not encode object %s from %s: %s", sop_uid, calling_ae, exc)
        stats.refused += 1
        return CANNOT_UNDERSTAND
    if len(data) > settings.DICOM_MAX_OBJECT_BYTES:
        log.warning("refused %s from %s: %d bytes is over the limit", sop_uid, calling_ae, len(data))
        stats.refused += 1
        return CANNOT_UNDERSTAND
    try:
        stored = spool.store(sop_uid, data)
    except SpoolError as exc:
        log.error("Out of Resources for %s from %s: %s", sop_uid, calling_ae, exc)
        stats.refused += 1
        return OUT_OF_RESOURCES
    # The object is durable now. If the database is down the sweeper registers it later.
    try:
        close_old_connections()
        obj, _ = dose_object_register(
            sop_instance_uid=sop_uid, sop_class_uid=sop_class, path=stored.path,
            sha256=stored.sha256, size_bytes=stored.size_bytes, calling_ae=calling_ae, enqueue=False,
        )
        if obj.status == DoseObject.STATUS_RECEIVED:  # (a duplicate of an ingested object needs nothing)
            (dispatch or enqueue_ingest)(obj.pk)
    except Exception as exc:
        log.warning("stored %s but could not record it (%s); the sweeper will register it", sop_uid, exc)
        connection.close()
    stats.stored += 1
    stats.ack_latencies_s.append(time.perf_counter() - started)
    if len(stats.ack_latencies_s) > 100_000:
        del stats.ack_latencies_s[:50_000]
    return SUCCESS


def build_ae(*, ae_title: str | None = None, allowed: list[str] | None = None) -> AE:
    ae = AE(ae_title=ae_title or settings.DICOM_AE_TITLE)
    ae.maximum_pdu_size = settings.DICOM_MAX_PDU
    ae.network_timeout = 30
    ae.acse_timeout = 30
    ae.dimse_timeout = 60
    ae.maximum_associations = 32
    allowed = settings.DICOM_ALLOWED_CALLING_AES if allowed is None else allowed
    if allowed and "*" not in allowed:
        ae.require_calling_aet = list(allowed)
    ae.add_supported_context(Verification)
    for uid in ACCEPTED_SOP_CLASSES:
        ae.add_supported_context(uid, ALL_TRANSFER_SYNTAXES)
    return ae


def start_listener(*, port: int | None = None, address: str | None = None, spool_dir=None, block: bool = False,
                   allowed: list[str] | None = None, ae_title: str | None = None):
    """Start the listener; returns (server, stats) when not blocking.

    Without a broker (tasks eager) it starts the in-process ingest worker too: ``server.ingest_worker``;
    ``server.shutdown()`` then finishes what it was given."""
    from dosereg.registry.services import enqueue_ingest

    spool = Spool(spool_dir or settings.SPOOL_DIR, min_free_bytes=settings.SPOOL_MIN_FREE_BYTES)
    stats = ListenerStats()
    worker = None
    if settings.CELERY_TASK_ALWAYS_EAGER:
        from dosereg.pipeline.worker import InProcessWorker

        worker = InProcessWorker(spool=spool).start()
    ae = build_ae(ae_title=ae_title, allowed=allowed)
    handlers = [
        (evt.EVT_CONN_OPEN, _on_conn_open),
        (evt.EVT_RELEASED, _on_assoc_end),
        (evt.EVT_ABORTED, _on_assoc_end),
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_C_STORE, handle_store, [spool, stats, worker.submit if worker else enqueue_ingest]),
    ]
    addr = (address or settings.DICOM_BIND_ADDRESS, settings.DICOM_PORT if port is None else port)
    ssl_context = build_ssl_context()
    log.info("DICOM listener %s on %s:%s%s, allowed callers: %s", ae.ae_title, addr[0], addr[1],
             " (TLS" + (", client certificates required)" if ssl_context.verify_mode == ssl.CERT_REQUIRED else ")")
             if ssl_context else "",
             ",".join(settings.DICOM_ALLOWED_CALLING_AES if allowed is None else allowed) or "any")
    server = ae.start_server(addr, block=block, evt_handlers=handlers, ssl_context=ssl_context)
    if server is not None:  # (None once a blocking server returned)
        setattr(server, "ingest_worker", worker)
        if worker is not None:
            stop_server, in_process = server.shutdown, worker

            def shutdown() -> None:  # stop receiving, then finish ingesting what was received
                stop_server()
                in_process.stop()
            setattr(server, "shutdown", shutdown)
    return server, stats
