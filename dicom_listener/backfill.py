"""Backfill from a PACS by query/retrieve (``python manage.py backfill``).

1. C-FIND (Study Root) at STUDY level for a date range (optionally per modality), then
   SERIES and IMAGE level for dose SR instances; studies without a dose SR contribute
   their image instances instead (header-only dose capture for units without RDSR).
2. Instances already in the registry (same SOP Instance UID, same study or not yet
   ingested) are skipped.
3. The rest are retrieved one by one: by C-GET, received by the same handler the
   listener uses (each object streamed to the spool as it arrives, durable write,
   then register; ingest is queued after commit),
   or by C-MOVE to our listener's AE title (the listener does the same).

Progress is kept in ``dosereg.ops`` (BackfillRun/BackfillItem): a run interrupted at
any point is resumed by running the same command again; a finished run re-run finds
everything present and retrieves nothing.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import date, timedelta

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, build_role, evt
# pynetdicom creates its SOP class names at import time; its stub module does not declare them
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from .server import ACCEPTED_SOP_CLASSES, ListenerStats, _on_assoc_end, attach_intake, handle_store
from .spool import Spool

log = logging.getLogger("dicom_listener.backfill")

DOSE_SR_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.88.67",  # X-Ray Radiation Dose SR
    "1.2.840.10008.5.1.4.1.1.88.76",  # Enhanced X-Ray Radiation Dose SR
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR (vendor dose summaries)
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
})
IMAGE_CLASSES = frozenset(uid for uid in ACCEPTED_SOP_CLASSES if ".88." not in uid)
IMAGE_MODALITIES = frozenset({"CR", "DX", "MG", "XA", "RF", "CT", "MR", "PX", "IO"})

PENDING_STATUSES = {0xFF00, 0xFF01}


class BackfillError(Exception):
    pass


@dataclass(frozen=True)
class Remote:
    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def parse_remote(value: str) -> Remote:
    m = re.fullmatch(r"\s*([^@]{1,16})@(\[[^\]]+\]|[^:@]+):(\d{1,5})\s*", value or "")
    if not m:
        raise BackfillError(f"--remote must look like AE@host:port, not {value!r}")
    return Remote(m.group(1).strip(), m.group(2).strip("[]"), int(m.group(3)))


def parse_rate(value: str | float | None) -> float | None:
    """'5', '5/s', '120/m', '3600/h' -> operations per second; None/0 -> unlimited."""
    if value in (None, "", 0, "0"):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(?:/\s*([smh]))?\s*", value)
    if not m:
        raise BackfillError(f"--rate must look like N/s, N/m or N/h, not {value!r}")
    per = {"s": 1, "m": 60, "h": 3600}[m.group(2) or "s"]
    rate = float(m.group(1)) / per
    return rate or None


def parse_date(value: str) -> date:
    v = value.strip().replace("-", "")
    if not re.fullmatch(r"\d{8}", v):
        raise BackfillError(f"dates are YYYY-MM-DD, not {value!r}")
    return date(int(v[:4]), int(v[4:6]), int(v[6:]))


class RateLimiter:
    """At most ``rate`` operations per second (each call to wait() is one operation)."""

    def __init__(self, rate: float | None, sleep=time.sleep, clock=time.monotonic):
        self.interval = 1.0 / rate if rate else 0.0
        self.sleep, self.clock = sleep, clock
        self.next_at = 0.0

    def wait(self) -> None:
        if not self.interval:
            return
        now = self.clock()
        if now < self.next_at:
            self.sleep(self.next_at - now)
            now = self.next_at
        self.next_at = now + self.interval


@dataclass
class Summary:
    found: int = 0
    already_present: int = 0
    retrieved: int = 0
    failed: int = 0
    run_id: int | None = None
    resumed: bool = False
    failures: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"run": self.run_id, "resumed": self.resumed, "found": self.found,
                "already_present": self.already_present, "retrieved": self.retrieved, "failed": self.failed}


def date_chunks(start: date, end: date, days: int | None) -> list[tuple[date, date]]:
    if end < start:
        raise BackfillError("--to is before --from")
    if not days:
        return [(start, end)]
    out, cur = [], start
    while cur <= end:
        last = min(end, cur + timedelta(days=days - 1))
        out.append((cur, last))
        cur = last + timedelta(days=1)
    return out


def in_registry(sop_instance_uid: str, study_instance_uid: str) -> bool:
    """Already here: the same SOP Instance UID in the same study, or not yet ingested (study unknown), or the same
    report re-filed under this Study Instance UID and kept with the study it was first filed under (its flag
    names this Study Instance UID: one procedure, counted once).

    The same SOP Instance UID re-used in another study is a different object (see the registry's identity rules).
    """
    from dosereg.registry.models import DoseObject

    rows = list(DoseObject.objects.filter(sop_instance_uid=sop_instance_uid)
                .values_list("study__study_instance_uid", "flags"))
    return any(s is None or s == study_instance_uid or s.startswith("nostudy-")
               or any(study_instance_uid in str(f) for f in (flags or [])) for s, flags in rows)


def _s(ds: Dataset, keyword: str) -> str:
    v = ds.get(keyword, "")
    if isinstance(v, MultiValue):
        return "\\".join(str(x) for x in v)
    return str(v or "").strip()


class Backfill:
    def __init__(self, remote: Remote, date_from: date, date_to: date, *, calling_ae: str = "BACKFILL",
                 method: str = "get", move_destination: str | None = None, rate: float | None = None,
                 modalities: list[str] | None = None, include_images: bool = True, chunk_days: int | None = None,
                 spool: Spool | None = None, progress=None, timeout: float = 60.0):
        if method not in ("get", "move"):
            raise BackfillError("--method is get or move")
        self.remote, self.date_from, self.date_to = remote, date_from, date_to
        self.calling_ae = calling_ae
        self.method = method
        self.move_destination = move_destination or settings.DICOM_AE_TITLE
        self.limiter = RateLimiter(rate)
        self.modalities = sorted({m.strip().upper() for m in (modalities or []) if m.strip()})
        self.include_images = include_images
        self.chunk_days = chunk_days
        self.spool = spool
        self.progress = progress or (lambda msg: log.info("%s", msg))
        self.timeout = timeout
        self._received: set[str] = set()
        self._lock = threading.Lock()

    # -- run bookkeeping -------------------------------------------------------------------
    def _run(self):
        from dosereg.ops.models import BackfillRun

        key = dict(remote=str(self.remote), date_from=self.date_from, date_to=self.date_to,
                   modalities=",".join(self.modalities), method=self.method, include_images=self.include_images)
        run = BackfillRun.objects.filter(**key).exclude(status=BackfillRun.STATUS_DONE).order_by("-pk").first()
        if run is not None:
            return run, True
        return BackfillRun.objects.create(**key), False

    def run(self) -> Summary:
        from dosereg.ops.models import BackfillItem, BackfillRun

        run, resumed = self._run()
        summary = Summary(run_id=run.pk, resumed=resumed)
        self.progress(f"backfill run {run.pk}{' (resumed)' if resumed else ''}: {self.remote} "
                      f"{self.date_from}..{self.date_to} by C-{self.method.upper()}")
        if not run.query_done:
            self._query(run)
        items = run.items.all()
        summary.found = items.count()
        todo = list(items.filter(status__in=[BackfillItem.PENDING, BackfillItem.FAILED]).order_by("pk"))
        summary.already_present = items.filter(status=BackfillItem.PRESENT).count()
        summary.retrieved = items.filter(status=BackfillItem.RETRIEVED).count() if resumed else 0
        self.progress(f"{summary.found} instances found on {self.remote.ae_title}; {len(todo)} to check")
        if todo:
            self._retrieve(todo, summary)
        summary.failed = items.filter(status=BackfillItem.FAILED).count()
        summary.failures = list(items.filter(status=BackfillItem.FAILED).values("sop_instance_uid", "error")[:50])
        run.status = BackfillRun.STATUS_DONE if not summary.failed else BackfillRun.STATUS_FAILED
        run.finished_at = timezone.now()
        run.summary = summary.as_dict()
        run.save(update_fields=["status", "finished_at", "summary", "updated_at"])
        return summary

    # -- associations -----------------------------------------------------------------------
    def _ae(self) -> AE:
        ae = AE(ae_title=self.calling_ae)
        ae.acse_timeout = ae.network_timeout = self.timeout
        ae.dimse_timeout = max(self.timeout, 120)
        ae.maximum_pdu_size = settings.DICOM_MAX_PDU
        return ae

    def _associate(self, ae: AE, **kw):
        assoc = ae.associate(self.remote.host, self.remote.port, ae_title=self.remote.ae_title, **kw)
        if not assoc.is_established:
            raise BackfillError(f"could not associate with {self.remote} as {self.calling_ae} "
                                "(is our AE title configured on the remote?)")
        return assoc

    # -- query ------------------------------------------------------------------------------
    def _find(self, assoc, ds: Dataset) -> list[Dataset]:
        self.limiter.wait()
        out = []
        for status, identifier in assoc.send_c_find(ds, StudyRootQueryRetrieveInformationModelFind):
            if status is None:
                raise BackfillError("C-FIND: no response from the remote (timeout or aborted)")
            code = int(getattr(status, "Status", 0xFFFF))
            if code in PENDING_STATUSES and identifier is not None:
                out.append(identifier)
            elif code != 0x0000 and code not in PENDING_STATUSES:
                raise BackfillError(f"C-FIND failed with status 0x{code:04X}")
        return out

    def _query(self, run) -> None:
        from dosereg.ops.models import BackfillItem

        ae = self._ae()
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        assoc = self._associate(ae)
        try:
            for start, end in date_chunks(self.date_from, self.date_to, self.chunk_days):
                chunk = f"{start:%Y%m%d}-{end:%Y%m%d}"
                if chunk in run.chunks_done:
                    continue
                studies: dict[str, Dataset] = {}
                modalities: list[str | None] = list(self.modalities) or [None]  # None: any modality
                for modality in modalities:
                    q = Dataset()
                    q.QueryRetrieveLevel = "STUDY"
                    q.StudyDate = chunk if start != end else f"{start:%Y%m%d}"
                    q.StudyInstanceUID = ""
                    q.ModalitiesInStudy = modality or ""
                    q.PatientID = ""
                    for study in self._find(assoc, q):
                        uid = _s(study, "StudyInstanceUID")
                        if uid:
                            studies[uid] = study
                rows: list[BackfillItem] = []
                for uid in sorted(studies):
                    rows.extend(BackfillItem(run=run, **item) for item in self._study_instances(assoc, uid))
                BackfillItem.objects.bulk_create(rows, ignore_conflicts=True, batch_size=500)
                run.chunks_done = [*run.chunks_done, chunk]
                run.save(update_fields=["chunks_done", "updated_at"])
                self.progress(f"query {chunk}: {len(studies)} studies, {len(rows)} instances")
            run.query_done = True
            run.save(update_fields=["query_done", "updated_at"])
        finally:
            assoc.release()

    def _instances(self, assoc, study_uid: str, series_uid: str) -> list[tuple[str, str]]:
        q = Dataset()
        q.QueryRetrieveLevel = "IMAGE"
        q.StudyInstanceUID = study_uid
        q.SeriesInstanceUID = series_uid
        q.SOPInstanceUID = ""
        q.SOPClassUID = ""
        return [(_s(i, "SOPInstanceUID"), _s(i, "SOPClassUID")) for i in self._find(assoc, q) if _s(i, "SOPInstanceUID")]

    def _study_instances(self, assoc, study_uid: str) -> list[dict]:
        q = Dataset()
        q.QueryRetrieveLevel = "SERIES"
        q.StudyInstanceUID = study_uid
        q.SeriesInstanceUID = ""
        q.Modality = ""
        series = [(_s(s, "SeriesInstanceUID"), _s(s, "Modality").upper()) for s in self._find(assoc, q)]
        dose, images = [], []
        for series_uid, modality in series:
            if not series_uid:
                continue
            if modality in ("SR", ""):
                for sop, cls in self._instances(assoc, study_uid, series_uid):
                    # a remote that does not return SOP Class UID: take the SR and let ingest decide
                    if cls in DOSE_SR_CLASSES or (not cls and modality == "SR"):
                        dose.append(dict(study_instance_uid=study_uid, series_instance_uid=series_uid,
                                         sop_instance_uid=sop, sop_class_uid=cls, kind="sr"))
        if dose or not self.include_images:
            return dose
        for series_uid, modality in series:
            if series_uid and modality in IMAGE_MODALITIES:
                for sop, cls in self._instances(assoc, study_uid, series_uid):
                    if cls in IMAGE_CLASSES or not cls:
                        images.append(dict(study_instance_uid=study_uid, series_instance_uid=series_uid,
                                           sop_instance_uid=sop, sop_class_uid=cls, kind="image"))
        return images

    # -- retrieve ---------------------------------------------------------------------------
    def _on_store(self, event, spool: Spool, stats: ListenerStats) -> int:
        status = handle_store(event, spool, stats)
        if status == 0x0000:
            with self._lock:
                self._received.add(str(event.request.AffectedSOPInstanceUID or "").strip())
        return status

    def _retrieve_assoc(self):
        ae = self._ae()
        if self.method == "move":
            ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
            return self._associate(ae)
        spool = self.spool or Spool(settings.SPOOL_DIR, min_free_bytes=settings.SPOOL_MIN_FREE_BYTES)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        roles = []
        for uid in ACCEPTED_SOP_CLASSES:
            ae.add_requested_context(uid, ALL_TRANSFER_SYNTAXES)
            roles.append(build_role(uid, scp_role=True))
        # as in the listener: each C-GET sub-operation's data set is streamed into the spool while it arrives
        # (size limit and in-flight budget enforced during the transfer), never held whole in memory
        attach_intake(ae, spool)
        handlers = [(evt.EVT_C_STORE, self._on_store, [spool, ListenerStats()]),
                    (evt.EVT_RELEASED, _on_assoc_end), (evt.EVT_ABORTED, _on_assoc_end)]
        return self._associate(ae, ext_neg=roles, evt_handlers=handlers)

    def _retrieve_one(self, assoc, item) -> tuple[bool, str]:
        q = Dataset()
        q.QueryRetrieveLevel = "IMAGE"
        q.StudyInstanceUID = item.study_instance_uid
        q.SeriesInstanceUID = item.series_instance_uid
        q.SOPInstanceUID = item.sop_instance_uid
        self.limiter.wait()
        if self.method == "move":
            responses = assoc.send_c_move(q, self.move_destination, StudyRootQueryRetrieveInformationModelMove)
        else:
            responses = assoc.send_c_get(q, StudyRootQueryRetrieveInformationModelGet)
        final, failed = None, 0
        for status, _identifier in responses:
            if status is None:
                return False, "no response from the remote (timeout or aborted)"
            final = int(getattr(status, "Status", 0xFFFF))
            failed = int(getattr(status, "NumberOfFailedSuboperations", 0) or 0)
        close_old_connections()
        arrived = item.sop_instance_uid in self._received or in_registry(item.sop_instance_uid, item.study_instance_uid)
        if arrived:
            return True, ""
        if final is None:
            return False, "no response"
        return False, (f"status 0x{final:04X}, {failed} failed sub-operations"
                       + ("" if self.method == "get" else f"; is {self.move_destination} configured on the remote "
                          "and is the remote's AE title allowed by our listener?"))

    def _retrieve(self, todo: list, summary: Summary) -> None:
        from dosereg.ops.models import BackfillItem

        assoc = None
        total = len(todo)
        try:
            for n, item in enumerate(todo, 1):
                close_old_connections()
                if in_registry(item.sop_instance_uid, item.study_instance_uid):
                    item.status = BackfillItem.PRESENT
                    item.save(update_fields=["status", "updated_at"])
                    summary.already_present += 1
                    self.progress(f"[{n}/{total}] present   {item.sop_instance_uid}")
                    continue
                ok, error = False, ""
                for _ in range(2):  # one reconnect if the association dropped
                    try:
                        if assoc is None or not assoc.is_established:
                            assoc = self._retrieve_assoc()
                        ok, error = self._retrieve_one(assoc, item)
                        break
                    except BackfillError as exc:
                        ok, error = False, str(exc)
                        break
                    except (RuntimeError, OSError, ValueError) as exc:
                        ok, error = False, f"{type(exc).__name__}: {exc}"
                        if assoc is not None:
                            assoc.abort()
                        assoc = None
                item.attempts += 1
                item.status = BackfillItem.RETRIEVED if ok else BackfillItem.FAILED
                item.error = error[:2000]
                item.save(update_fields=["status", "attempts", "error", "updated_at"])
                if ok:
                    summary.retrieved += 1
                self.progress(f"[{n}/{total}] {'retrieved' if ok else 'FAILED   '} {item.sop_instance_uid}"
                              + (f": {error}" if error else ""))
        finally:
            if assoc is not None and assoc.is_established:
                assoc.release()
