"""The DICOM listener: Storage SCP + Verification SCP with a calling-AE allow-list.

The C-STORE handler parses nothing. Each object is streamed to the spool while it is received (pynetdicom's
chunked receive: memory stays at one PDU whatever the object's size) and the size limit is enforced as the
data arrive. The handler then validates the request's UIDs, makes the file durable (fsync, atomic rename),
records it, enqueues its ingest after commit, and only then answers Success. If the object cannot be
stored durably it answers Out of Resources (0xA700) so that the modality keeps it and retries; an object
that can never be stored (non-conformant UID, over the size limit) is refused with a failure status.

Connections are bounded too: a connection must send its association request within
DICOM_ASSOCIATION_TIMEOUT_S, one peer address holds at most DICOM_MAX_CONNECTIONS_PER_PEER connections,
and a PDU larger than DICOM_MAX_PDU ends the connection.

``dispatch`` is ``registry.receiving.enqueue_ingest`` (the Celery task
``dosereg.ingest_object``) with a broker; in the embedded default (no broker,
tasks eager) it is ``dosereg.pipeline.worker.InProcessWorker.submit``: one
thread of this process ingests, so the answer never waits for parsing,
alerts or e-mail.
"""
from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

from django.conf import settings
from django.db import close_old_connections, connection
from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, _config, dimse_messages, evt
from pynetdicom.events import EventHandlerType
# pynetdicom creates its SOP class names at import time; its stub module does not declare them
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from .spool import NO_RESOURCES, TOO_LARGE, IncomingFile, InflightBudget, Spool, SpoolError, clean_stale_tmp, valid_uid

log = logging.getLogger("dicom_listener")

# Status codes (PS3.4 Annex B / PS3.7 C)
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
AFFECTED_SOP_INSTANCE_UID_TAG = 0x00001000
AFFECTED_SOP_CLASS_UID_TAG = 0x00000002
# Calling AE titles anyone can type: DCMTK's and common toolkits' defaults. Allowed only if configured.
GENERIC_CALLING_AES = {"STORESCU", "ANY-SCU", "ANY-SCP", "ECHOSCU", "FINDSCU", "MOVESCU", "GETSCU", "PYNETDICOM"}

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
    # nuclear medicine and PET images: their Radiopharmaceutical Information Sequence when no RRDSR comes
    "1.2.840.10008.5.1.4.1.1.20": "Nuclear Medicine Image",
    "1.2.840.10008.5.1.4.1.1.128": "Positron Emission Tomography Image",
    "1.2.840.10008.5.1.4.1.1.130": "Enhanced PET Image",
}


class ConnectionEndedByListener(TimeoutError):
    """The listener ended a connection on purpose (no association request in time, a PDU over the limit); it logs
    why in one line. pynetdicom's reader also logs the exception with its traceback: that record is dropped."""


def _drop_tracebacks_of_own_closes(record: logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    return not isinstance(exc, ConnectionEndedByListener)


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


# ---------------------------------------------------------------------------
# streaming receive
# ---------------------------------------------------------------------------
class Intake:
    """Where and how an AE's incoming objects are streamed: spool, size limit, in-flight budget.

    Attached to an AE as ``ae.dosereg_intake``; pynetdicom asks for a temporary file when a C-STORE's
    data set starts (``dimse_messages.NamedTemporaryFile``), and ``_spooling_tempfile`` hands it an
    ``IncomingFile`` in the spool instead. Files of an association that ends mid-transfer are removed.
    """

    def __init__(self, spool: Spool, *, max_object_bytes: int, max_inflight_bytes: int) -> None:
        self.spool = spool
        self.max_object_bytes = max_object_bytes
        self.budget = InflightBudget(max_inflight_bytes)
        self._open: dict[int, list[IncomingFile]] = {}
        self._lock = threading.Lock()

    def open(self, assoc) -> IncomingFile:
        incoming = self.spool.open_incoming(max_bytes=self.max_object_bytes, budget=self.budget)
        incoming.on_runaway = lambda inc: _abort_runaway(assoc, inc)
        with self._lock:
            files = [f for f in self._open.get(id(assoc), []) if not f.closed]
            files.append(incoming)
            self._open[id(assoc)] = files
        return incoming

    def release(self, assoc) -> None:
        """The association ended: whatever it left half-received is deleted and its budget returned."""
        with self._lock:
            files = self._open.pop(id(assoc), [])
        for f in files:
            f.close()


def _abort_runaway(assoc, incoming: IncomingFile) -> None:
    log.warning("aborting the association from %s: it sent %d bytes for one object (limit %d)",
                _peer(assoc), incoming.size + incoming.discarded, incoming.max_bytes)
    try:
        assoc.abort(block=False)  # we are in the association's own DUL thread: queue the A-ABORT
    except Exception as exc:  # pragma: no cover - the connection is already gone
        log.warning("abort failed: %s", exc)


_ORIGINAL_TEMPFILE = dimse_messages.NamedTemporaryFile


def _spooling_tempfile(*args, **kwargs):
    """pynetdicom's chunked receive asks for its temporary file from the association's DUL thread."""
    assoc = getattr(threading.current_thread(), "assoc", None)
    intake = getattr(getattr(assoc, "ae", None), "dosereg_intake", None)
    if intake is None:
        return _ORIGINAL_TEMPFILE(*args, **kwargs)
    return intake.open(assoc)


def attach_intake(ae: AE, spool: Spool) -> Intake:
    """Stream this AE's incoming C-STORE data sets into ``spool`` (the listener, and backfill's C-GET)."""
    _config.STORE_RECV_CHUNKED_DATASET = True
    dimse_messages.NamedTemporaryFile = _spooling_tempfile
    intake = Intake(spool, max_object_bytes=settings.DICOM_MAX_OBJECT_BYTES,
                    max_inflight_bytes=settings.DICOM_MAX_INFLIGHT_BYTES)
    setattr(ae, "dosereg_intake", intake)  # our own attribute on pynetdicom's AE, read by _spooling_tempfile
    return intake


def _incoming_for(event, spool: Spool) -> tuple[IncomingFile, bool]:
    """(the received object as an IncomingFile, whether pynetdicom owns and closes it)."""
    request = event.request
    streamed = getattr(request, "_dataset_file", None)
    if isinstance(streamed, IncomingFile):
        return streamed, True
    # not streamed by us (an AE without an intake): copy what pynetdicom holds, within the same limits
    incoming = spool.open_incoming(max_bytes=settings.DICOM_MAX_OBJECT_BYTES)
    path = getattr(request, "_dataset_path", None)
    if path is not None and not isinstance(path, tuple):
        with open(path, "rb") as fh:
            while chunk := fh.read(1024 * 1024):
                incoming.write(chunk)
    else:
        incoming.write(event.encoded_dataset(include_meta=True))
    return incoming, False


# ---------------------------------------------------------------------------
# connections
# ---------------------------------------------------------------------------
class _GuardedRequestHandler(RequestHandler):
    server: GuardedAssociationServer  # the only server class that uses this handler

    def handle(self) -> None:
        try:
            super().handle()  # TLS handshake (EVT_CONN_OPEN), then the association thread starts
        finally:
            self.server.connection_started(self.client_address[0])


class GuardedAssociationServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with a cap on concurrent connections per peer address.

    A connection over the cap is closed as soon as it is accepted, before any thread is started for it;
    connections count until their association thread ends (TLS handshake included)."""

    max_per_peer = 8

    def __init__(self, *args, **kwargs) -> None:
        self._starting: Counter[str] = Counter()
        self._count_lock = threading.Lock()
        kwargs["request_handler"] = _GuardedRequestHandler
        super().__init__(*args, **kwargs)

    def connections_from(self, host: str) -> int:
        live = 0
        for assoc in self.active_associations:
            try:
                live += assoc.requestor.address == host
            except ValueError:
                pass
        return live + self._starting[host]

    def verify_request(self, request, client_address) -> bool:
        host = client_address[0]
        with self._count_lock:
            if self.connections_from(host) >= self.max_per_peer:
                log.warning("closed a connection from %s: it already holds %d connections (DICOM_MAX_CONNECTIONS_PER_PEER)",
                            host, self.max_per_peer)
                return False
            self._starting[host] += 1
        return True

    def connection_started(self, host: str) -> None:
        with self._count_lock:
            self._starting[host] -= 1
            if self._starting[host] <= 0:
                del self._starting[host]


def _peer(assoc) -> str:
    try:
        return str(assoc.requestor.address)
    except Exception:
        return "?"


def _pdu_limit() -> int:
    # an A-ASSOCIATE-RQ with many presentation contexts may exceed a small maximum PDU: allow 256 KiB
    return max(settings.DICOM_MAX_PDU, 256 * 1024) + 16 if settings.DICOM_MAX_PDU else 1 << 32


def _guard_socket(assoc, raw, deadline: float) -> None:
    """Bound what a peer can make the reader hold and how long it may take to associate.

    pynetdicom reads a whole PDU (the length the peer announces, up to 4 GiB) before decoding it, and
    waits for a half-sent PDU without a deadline. Until the association is established every read has to
    finish by ``deadline``; a PDU announcing more than the maximum we accept ends the connection."""
    assoc_socket = assoc.dul.socket
    limit = _pdu_limit()
    original = assoc_socket.recv

    def recv(nr_bytes: int) -> bytearray:
        if nr_bytes > limit:
            log.warning("closing the connection from %s: a PDU of %d bytes (maximum %d)", _peer(assoc), nr_bytes, limit)
            raise ConnectionEndedByListener(f"PDU of {nr_bytes} bytes is over the limit")
        if assoc.is_established:
            return original(nr_bytes)
        data = bytearray()
        while len(data) < nr_bytes:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning("closing the connection from %s: no association request within %s s", _peer(assoc),
                            settings.DICOM_ASSOCIATION_TIMEOUT_S)
                raise ConnectionEndedByListener("no association request in time")
            raw.settimeout(remaining)
            try:
                chunk = raw.recv(min(65536, nr_bytes - len(data)))
            except TimeoutError:  # (socket.timeout) the deadline passed while waiting: said and raised above
                continue
            if not chunk:
                break
            data.extend(chunk)
        return data

    assoc_socket.recv = recv


def _on_conn_open(event) -> None:
    deadline = time.monotonic() + settings.DICOM_ASSOCIATION_TIMEOUT_S
    sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    # Nagle + delayed ACK would add 40-100 ms to every small C-STORE response.
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (AttributeError, OSError):  # pragma: no cover - platform without TCP_NODELAY
            pass
    if isinstance(sock, ssl.SSLSocket):
        sock.settimeout(max(0.1, min(TLS_HANDSHAKE_TIMEOUT_S, deadline - time.monotonic())))
        try:
            sock.do_handshake()
        except (OSError, ValueError) as exc:  # not TLS, bad or missing client certificate, timeout
            log.warning("TLS handshake with %s failed: %s", getattr(event, "address", None), exc)
            try:
                sock.close()  # the association reactor sees the closed transport and ends
            except OSError:
                pass
            return
    if sock is not None:
        _guard_socket(event.assoc, sock, deadline)


def _on_accepted(event) -> None:
    # established: from now on a read may wait as long as the association may stay idle
    sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if sock is None:
        return
    try:
        sock.settimeout(settings.DICOM_IDLE_TIMEOUT_S)
    except (AttributeError, OSError):
        pass


def _on_assoc_end(event) -> None:
    # runs in the association's thread: give back its database connection
    intake = getattr(event.assoc.ae, "dosereg_intake", None)
    if intake is not None:
        intake.release(event.assoc)
    connection.close()


def handle_echo(event) -> int:
    return SUCCESS


def _failure(status: int, comment: str, offending: int | None = None) -> Dataset:
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = comment[:64]  # LO
    if offending is not None:
        ds.OffendingElement = [offending]
    return ds


def _request_uid(value) -> str:
    # a UI value may carry one trailing NUL (or space) as padding; anything else is part of the value
    text = str(value or "")
    return text[:-1] if text.endswith(("\x00", " ")) else text


def handle_store(event, spool: Spool, stats: ListenerStats, dispatch=None):
    from dosereg.registry.models import DoseObject
    from dosereg.registry.receiving import dose_object_register, enqueue_ingest

    from .reconcile import replacement_conflict

    started = time.perf_counter()
    request = event.request
    sop_uid = _request_uid(request.AffectedSOPInstanceUID)
    sop_class = _request_uid(request.AffectedSOPClassUID)
    assoc = event.assoc
    calling_ae = assoc.requestor.ae_title.strip() if assoc else ""
    peer = _peer(assoc) if assoc else ""
    try:
        incoming, owned_by_pynetdicom = _incoming_for(event, spool)
    except (OSError, ValueError, AttributeError) as exc:
        log.error("Out of Resources for %r from %s: %s", sop_uid, calling_ae, exc)
        stats.refused += 1
        return OUT_OF_RESOURCES

    def refuse(status, comment: str, offending: int | None = None):
        incoming.close()
        stats.refused += 1
        log.warning("refused %r from %s (%s): %s", sop_uid, calling_ae, peer, comment)
        return _failure(status, comment, offending)

    try:
        # Acknowledged means kept: a UID the registry cannot key on (a NUL, letters, over 64 characters) is
        # refused here, before anything is stored, never acknowledged and then lost.
        if not valid_uid(sop_uid):
            return refuse(CANNOT_UNDERSTAND, "Affected SOP Instance UID is not a valid DICOM UID",
                          AFFECTED_SOP_INSTANCE_UID_TAG)
        if not valid_uid(sop_class):
            return refuse(CANNOT_UNDERSTAND, "Affected SOP Class UID is not a valid DICOM UID",
                          AFFECTED_SOP_CLASS_UID_TAG)
        if incoming.failure is not None:
            kind, message = incoming.failure
            if kind == TOO_LARGE:
                return refuse(CANNOT_UNDERSTAND, f"object over the size limit ({incoming.max_bytes} bytes)")
            log.error("Out of Resources for %s from %s: %s", sop_uid, calling_ae, message)
            return refuse(OUT_OF_RESOURCES, message)
        meta = {"sop_class_uid": sop_class, "calling_ae": calling_ae, "peer": peer,
                "called_ae": assoc.acceptor.ae_title.strip() if assoc else "",
                "received_at": datetime.now(timezone.utc).isoformat()}
        try:
            stored = spool.commit(incoming, sop_uid, meta)
        except SpoolError as exc:
            log.error("Out of Resources for %s from %s: %s", sop_uid, calling_ae, exc)
            stats.refused += 1
            return OUT_OF_RESOURCES
    finally:
        if not owned_by_pynetdicom:
            incoming.close()
    # The object is durable now (with its side-car). If the database is down the sweeper registers it later.
    try:
        close_old_connections()
        reason = replacement_conflict(sop_instance_uid=sop_uid, sha256=stored.sha256, calling_ae=calling_ae)
        if reason:
            log.warning("flagged %s from %s: %s", sop_uid, calling_ae, reason)
        obj, _ = dose_object_register(
            sop_instance_uid=sop_uid, sop_class_uid=sop_class, path=stored.path,
            sha256=stored.sha256, size_bytes=stored.size_bytes, calling_ae=calling_ae, quarantine_reason=reason,
            enqueue=False,
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
    # A connection has DICOM_ASSOCIATION_TIMEOUT_S to associate (ARTIM); an established one may stay idle
    # DICOM_IDLE_TIMEOUT_S. Idle connections count against maximum_associations: they must not last.
    ae.network_timeout = settings.DICOM_IDLE_TIMEOUT_S
    ae.acse_timeout = settings.DICOM_ASSOCIATION_TIMEOUT_S
    ae.dimse_timeout = 60
    ae.maximum_associations = settings.DICOM_MAX_ASSOCIATIONS
    ae.require_called_aet = settings.DICOM_REQUIRE_CALLED_AE
    allowed = settings.DICOM_ALLOWED_CALLING_AES if allowed is None else allowed
    if not allowed:
        raise ValueError("no calling AE title is allowed: set DICOM_ALLOWED_CALLING_AES (or * for any caller)")
    if "*" not in allowed:
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
    from dosereg.registry.receiving import enqueue_ingest

    logging.getLogger("pynetdicom.dul").addFilter(_drop_tracebacks_of_own_closes)  # (the same filter once)
    spool = Spool(spool_dir or settings.SPOOL_DIR, min_free_bytes=settings.SPOOL_MIN_FREE_BYTES)
    clean_stale_tmp(spool)
    stats = ListenerStats()
    worker = None
    if settings.CELERY_TASK_ALWAYS_EAGER:
        from dosereg.pipeline.worker import InProcessWorker

        worker = InProcessWorker(spool=spool).start()
    ae = build_ae(ae_title=ae_title, allowed=allowed)
    attach_intake(ae, spool)
    handlers: list[EventHandlerType] = [
        (evt.EVT_CONN_OPEN, _on_conn_open),
        (evt.EVT_ACCEPTED, _on_accepted),
        (evt.EVT_RELEASED, _on_assoc_end),
        (evt.EVT_ABORTED, _on_assoc_end),
        (evt.EVT_CONN_CLOSE, _on_assoc_end),
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_C_STORE, handle_store, [spool, stats, worker.submit if worker else enqueue_ingest]),
    ]
    addr = (address or settings.DICOM_BIND_ADDRESS, settings.DICOM_PORT if port is None else port)
    ssl_context = build_ssl_context()
    callers = settings.DICOM_ALLOWED_CALLING_AES if allowed is None else allowed
    generic = sorted(GENERIC_CALLING_AES & {a.upper() for a in callers})
    if generic or "*" in callers:
        log.warning("the listener accepts %s: anyone on the network can send reports under it; give each modality "
                    "its own AE title", ", ".join(generic) or "any calling AE title (*)")
    log.info("DICOM listener %s on %s:%s%s, allowed callers: %s", ae.ae_title, addr[0], addr[1],
             " (TLS" + (", client certificates required)" if ssl_context.verify_mode == ssl.CERT_REQUIRED else ")")
             if ssl_context else "", ",".join(callers))
    server = ae.make_server(addr, ssl_context=ssl_context, evt_handlers=handlers, server_class=GuardedAssociationServer)
    assert isinstance(server, GuardedAssociationServer)  # make_server builds the server_class given
    server.max_per_peer = settings.DICOM_MAX_CONNECTIONS_PER_PEER
    ae._servers.append(server)  # as AE.start_server does (shutdown() removes it)
    setattr(server, "ingest_worker", worker)
    if worker is not None:
        stop_server, in_process = server.shutdown, worker

        def shutdown() -> None:  # stop receiving, then finish ingesting what was received
            stop_server()
            in_process.stop()
        setattr(server, "shutdown", shutdown)
    if block:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            server.shutdown()
        return None, stats
    thread = threading.Thread(target=server.serve_forever, name="dosereg-listener-accept", daemon=True)
    thread.start()
    return server, stats
