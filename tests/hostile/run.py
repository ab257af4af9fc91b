"""Send a hostile corpus through a running listener with parallel associations, then check what issue #18
asks: the listener is alive, every acknowledged object is registered (ingested, kept as not-a-dose-object or
quarantined with a reason), refused objects left nothing, the spool reconciles with the registry, no two
patient identities share a patient row, and no page or API answer about the affected patients is a 500.

Used by ``tests/hostile/test_hostile_corpus.py`` (a sample, in CI) and ``bench/bench_hostile.py`` (10,000).
"""
from __future__ import annotations

import queue
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .corpus import Hostile

SUCCESS = 0x0000


@dataclass
class Record:
    family: str
    case: str
    sop_uid: str
    identity: tuple[str, str] | None
    refuse: bool
    size: int
    status: int | None = None   # None: not acknowledged at all (association aborted, no context)
    error: str = ""

    @property
    def name(self) -> str:
        return f"{self.family}/{self.case}"

    @property
    def acked(self) -> bool:
        return self.status == SUCCESS


@contextmanager
def _raw_sending():
    """Send files as bytes (pynetdicom parses only the File Meta) and let non-conformant UIDs out, as a
    broken modality would: the listener's own checks must deal with them."""
    from pynetdicom import _config, dimse_primitives

    old_chunked, real_set_uid = _config.STORE_SEND_CHUNKED_DATASET, dimse_primitives.set_uid
    _config.STORE_SEND_CHUNKED_DATASET = True
    dimse_primitives.set_uid = lambda value, name, *a, **k: real_set_uid(value, name, validate=False)
    try:
        yield
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = old_chunked
        dimse_primitives.set_uid = real_set_uid


def _contexts():
    from pynetdicom import build_context
    from pynetdicom.sop_class import Verification
    from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    from tests.badinput import objects as O

    cx = [build_context(Verification)]
    for ts in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian):
        cx.append(build_context(O.RDSR_CLASS, [ts]))  # one context per transfer syntax: each may be accepted
    for cls in (O.COMPREHENSIVE_SR, O.CT_IMAGE, O.SECONDARY_CAPTURE):
        cx.append(build_context(cls, [ExplicitVRLittleEndian]))
    return cx


def send_corpus(port: int, objects: Iterable[Hostile], *, parallel: int = 4, calling_ae: str = "MODALITY1",
                called_ae: str = "DOSEREG", workdir: Path | None = None, timeout_s: float = 60) -> list[Record]:
    """Send each object once over ``parallel`` concurrent associations (re-associating after an abort).
    Objects are written to a file just before they are sent and not kept in memory."""
    from pynetdicom import AE

    records: list[Record] = []
    todo: queue.Queue = queue.Queue(maxsize=parallel * 4)
    lock = threading.Lock()
    tmp = Path(workdir or tempfile.mkdtemp(prefix="hostile-"))
    tmp.mkdir(parents=True, exist_ok=True)

    def associate():
        ae = AE(ae_title=calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
        ae.requested_contexts = _contexts()
        for _ in range(20):
            assoc = ae.associate("127.0.0.1", port, ae_title=called_ae)
            if assoc.is_established:
                return assoc
            time.sleep(0.5)
        raise RuntimeError("could not associate with the listener")

    def worker(n: int) -> None:
        path = tmp / f"sender{n}.dcm"
        assoc = None
        while True:
            item = todo.get()
            if item is None:
                break
            h, rec = item
            path.write_bytes(h.data)
            try:
                if assoc is None or not assoc.is_established:
                    assoc = associate()
                rsp = assoc.send_c_store(path)
                rec.status = int(rsp.Status) if rsp is not None and "Status" in rsp else None
                if rec.status is None:
                    rec.error = "no response"
            except Exception as exc:  # no presentation context, unreadable File Meta, association gone
                rec.status, rec.error = None, f"{type(exc).__name__}: {exc}"[:300]
            if assoc is not None and not assoc.is_established:
                assoc = None
        if assoc is not None and assoc.is_established:
            assoc.release()

    with _raw_sending():
        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(parallel)]
        for t in threads:
            t.start()
        for h in objects:
            rec = Record(h.family, h.case, h.sop_uid, h.identity, h.refuse, len(h.data))
            with lock:
                records.append(rec)
            todo.put((h, rec))
        for _ in threads:
            todo.put(None)
        for t in threads:
            t.join()
    return records


@dataclass
class Report:
    sent: int = 0
    acknowledged: int = 0
    not_acknowledged: int = 0
    outcomes: Counter = field(default_factory=Counter)           # registry status of acknowledged objects
    per_family: dict = field(default_factory=dict)             # family -> Counter(outcome)
    problems: list[str] = field(default_factory=list)
    patients_checked: int = 0
    pages_checked: int = 0
    throttled_waits: int = 0                                   # API answers 429 waited out and asked again
    reconcile: dict = field(default_factory=dict)

    def add(self, problem: str) -> None:
        if len(self.problems) < 200:
            self.problems.append(problem)


def wait_settled(uids: set[str], timeout_s: float) -> int:
    """Wait until none of these objects is still "received" (ingest pending); returns how many still are."""
    from django.db import close_old_connections

    from dosereg.registry.models import DoseObject

    deadline = time.monotonic() + timeout_s
    uid_list = sorted(u for u in uids if "\x00" not in u)
    while True:
        close_old_connections()
        pending = sum(DoseObject.objects.filter(sop_instance_uid__in=uid_list[i:i + 5000],
                                                status=DoseObject.STATUS_RECEIVED).count()
                      for i in range(0, len(uid_list), 5000))
        if pending == 0 or time.monotonic() > deadline:
            return pending
        time.sleep(1.0 if len(uid_list) < 2000 else 10.0)  # a large run: do not load the database with polling


def verify(records: list[Record], *, spool_dir: Path, max_patients_paged: int | None = None) -> Report:
    """The invariants of issue #18 over what was sent (call ``wait_settled`` first)."""
    from dicom_listener.reconcile import spool_reconcile
    from dicom_listener.spool import Spool
    from dosereg.registry.models import DoseObject, Patient

    rep = Report(sent=len(records))
    acked = [r for r in records if r.acked]
    rep.acknowledged, rep.not_acknowledged = len(acked), len(records) - len(acked)
    rows: dict[str, list[tuple]] = defaultdict(list)
    uids = sorted({r.sop_uid for r in records if "\x00" not in r.sop_uid})  # (PostgreSQL text holds no NUL)
    for i in range(0, len(uids), 5000):
        for row in DoseObject.objects.filter(sop_instance_uid__in=uids[i:i + 5000]).values_list(
                "sop_instance_uid", "status", "quarantine_reason", "study_id", "study__patient_id", "superseded_by_id"):
            rows[row[0]].append(row)

    # acknowledged means kept; refused means nothing kept
    fam: dict[str, Counter] = defaultdict(Counter)
    for r in records:
        got = rows.get(r.sop_uid, [])
        if r.refuse:
            if r.acked:
                rep.add(f"{r.name}: a non-conformant Affected SOP Instance UID {r.sop_uid!r} was acknowledged")
            if got:
                rep.add(f"{r.name}: a refused object left {len(got)} registry rows")
        if not r.acked:
            fam[r.family]["refused" if r.status is not None else "not sent/aborted"] += 1
            continue
        if not got:
            rep.add(f"{r.name}: acknowledged {r.sop_uid} is in neither registry nor quarantine")
            fam[r.family]["LOST"] += 1
            continue
        statuses = {g[1] for g in got}
        outcome = "/".join(sorted(statuses))
        fam[r.family][outcome] += 1
        rep.outcomes[outcome] += 1
        for g in got:
            if g[1] == DoseObject.STATUS_RECEIVED:
                rep.add(f"{r.name}: {r.sop_uid} never left 'received'")
            elif g[1] in (DoseObject.STATUS_QUARANTINED, DoseObject.STATUS_NOT_DOSE) and not (g[2] or "").strip():
                rep.add(f"{r.name}: {r.sop_uid} is {g[1]} without a reason")
    rep.per_family = {k: dict(v) for k, v in sorted(fam.items())}
    dup = [u for u, g in rows.items() if len({x[3] for x in g if x[1] == DoseObject.STATUS_INGESTED and x[5] is None}) > 1]
    for u in dup[:20]:
        rep.add(f"{u}: one SOP Instance counted in several studies")

    # no two identities on one patient row, and each row holds what was meant
    by_patient: dict[int, set] = defaultdict(set)
    for r in acked:
        if r.identity is None:
            continue
        for g in rows.get(r.sop_uid, []):
            if g[1] == DoseObject.STATUS_INGESTED and g[4] is not None:
                by_patient[g[4]].add(r.identity)
    stored = {p.pk: (p.issuer, p.patient_id) for p in Patient.objects.filter(pk__in=list(by_patient))}
    for pk, idents in by_patient.items():
        if len(idents) > 1:
            rep.add(f"patient row {pk} joins {len(idents)} identities: {sorted(idents)[:3]}")
        elif stored.get(pk) not in idents:
            rep.add(f"patient row {pk} is {stored.get(pk)!r}, the objects filed under it say {sorted(idents)}")

    # the spool holds nothing the registry does not know
    rep.reconcile = spool_reconcile(spool=Spool(spool_dir), grace_s=0, max_listed=10)
    if rep.reconcile["unregistered"]:
        rep.add(f"spool: {rep.reconcile['unregistered']} objects in neither registry nor quarantine: "
                f"{rep.reconcile['unregistered_paths'][:3]}")

    # the pages and the API about the affected patients answer (no 500)
    patients = sorted({g[4] for gs in rows.values() for g in gs if g[4] is not None})
    studies = sorted({g[3] for gs in rows.values() for g in gs if g[3] is not None})
    if max_patients_paged is not None:
        patients, studies = patients[:max_patients_paged], studies[:max_patients_paged]
    rep.patients_checked = len(patients)
    _check_pages(rep, patients, studies)
    return rep


GLOBAL_PAGES = ["/dashboard/", "/patients/", "/studies/", "/studies/export.csv", "/studies/export.xlsx", "/protocols/",
                "/api/v1/studies/", "/api/v1/events/", "/api/v1/patients/", "/api/v1/alerts/"]


def _check_pages(rep: Report, patients: list[int], studies: list[int]) -> None:
    from django.contrib.auth.models import User
    from django.test import Client

    user, _ = User.objects.get_or_create(username="hostile-admin", defaults={"is_staff": True, "is_superuser": True})
    if not user.is_superuser:
        user.is_superuser = user.is_staff = True
        user.save()
    client = Client(raise_request_exception=False)
    client.force_login(user)
    urls = list(GLOBAL_PAGES)
    for pk in patients:
        urls += [f"/patients/{pk}/", f"/patients/{pk}/export.csv", f"/api/v1/patients/{pk}/",
                 f"/api/v1/fhir/Observation?patient={pk}", f"/api/v1/studies/?patient={pk}"]
    for pk in studies:
        urls += [f"/studies/{pk}/", f"/api/v1/studies/{pk}/", f"/api/v1/studies/{pk}/events/"]
    for url in urls:
        res = _get_unthrottled(client, url, rep)
        rep.pages_checked += 1
        if res.status_code >= 500:
            rep.add(f"GET {url} answered {res.status_code}")
        elif res.status_code == 429:  # still throttled: not checked, and a 500 behind it would go unseen
            rep.add(f"GET {url} not checked: throttled (429) after {THROTTLE_RETRIES} waits")


THROTTLE_RETRIES = 5


def _get_unthrottled(client, url: str, rep: Report, sleep=time.sleep):
    """GET ``url``; an API answer 429 (the user's request rate, API_THROTTLE_USER) is not a page checked: wait what
    its Retry-After says (at most 65 s) and ask again, up to THROTTLE_RETRIES times."""
    res = client.get(url)
    for _ in range(THROTTLE_RETRIES):
        if res.status_code != 429:
            break
        rep.throttled_waits += 1
        try:
            wait = float(res.headers.get("Retry-After") or 1)
        except ValueError:
            wait = 1.0
        sleep(min(max(wait, 0.5), 65.0))
        res = client.get(url)
    return res


def summary(rep: Report) -> str:
    lines = [f"sent {rep.sent}, acknowledged {rep.acknowledged}, not acknowledged {rep.not_acknowledged}",
             f"outcomes of acknowledged objects: {dict(rep.outcomes)}"]
    for family, counts in rep.per_family.items():
        lines.append(f"  {family:11} {counts}")
    lines.append(f"spool reconcile: files {rep.reconcile.get('files')}, unregistered {rep.reconcile.get('unregistered')}")
    lines.append(f"pages checked: {rep.pages_checked} for {rep.patients_checked} patients"
                 f" ({rep.throttled_waits} API throttling waits)")
    lines.append(f"problems: {len(rep.problems)}")
    lines += [f"  - {p}" for p in rep.problems[:50]]
    return "\n".join(lines)
