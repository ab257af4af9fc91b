"""Read-side queries for the web pages and the API.

Every selector runs a fixed number of SQL queries whatever the data size (the
tests assert the counts). Large tables are only touched through indexed date
ranges and aggregated in the database.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Aggregate, Avg, Count, DateField, F, FloatField, Max, OuterRef, Prefetch, Q, Subquery, Sum, TextField
from django.db.models.functions import Cast, TruncDate, TruncWeek
from django.utils import timezone

from dosereg import formatting as fmt
from dosereg.registry.merge_group import patient_group_ids
from dosereg.registry import selectors as registry_selectors
from dosereg.access.scope import EVERY_SITE, SiteScope, scope_for
from dosereg.protocols.models import DRLSet, DRLValue, ProtocolMapping, StandardName
from dosereg.protocols import age_bands
from dosereg.protocols.selectors import AuditKey, audit_groups
from dosereg.skindose import selectors as skin_selectors
from dosereg.registry.models import (
    Device,
    DeviceSoftwareVersion,
    DoseObject,
    IrradiationEvent,
    MRExam,
    Participant,
    Patient,
    PREGNANT_Q,
    PlaneTotal,
    Study,
)

from . import explain
from .models import PatientAccount

AUDIT_QUANTITIES = [
    ("dap_total_gy_cm2", "KAP", "Gy·cm²"),
    ("dose_rp_max_plane_gy", "Ka,r", "Gy"),
    ("fluoro_time_total_s", "Fluoro time", "s"),
    ("ctdivol_max_mgy", "CTDIvol", "mGy"),
    ("dlp_total_mgy_cm", "DLP", "mGy·cm"),
]
MIN_SAMPLE = {"CT": 20, "DX": 20, "CR": 20, "MG": 20, "RF": 30, "XA": 50}  # ICRP 135 / UK practice (§8.1)


# ---------------------------------------------------------------------------
# patients
# ---------------------------------------------------------------------------
def patient_for_user(user) -> Patient | None:
    """The one registry Patient a verified portal user is linked to (None for everyone else)."""
    if not getattr(user, "is_authenticated", False):
        return None
    acc = (
        PatientAccount.objects.filter(user=user, verified_at__isnull=False, revoked=False)
        .select_related("patient")
        .first()
    )
    return acc.patient if acc else None


def patient_search(*, q: str = "", limit: int = 50, scope: SiteScope = EVERY_SITE) -> list[dict]:
    """Patients by ID or name (or the most recently examined); ``scope``: only patients with a study at its
    sites, with the count and last date of their exams there."""
    if not scope.unrestricted and not scope.sites:
        return []
    qs = Patient.objects.filter(merged_into__isnull=True).filter(scope.patient_q())
    q = q.strip()
    if q:
        qs = qs.filter(Q(patient_id__iexact=q) | Q(patient_id__istartswith=q) | Q(name__icontains=q))
    else:  # the most recently examined patients
        recent = (
            Study.objects.filter(patient__isnull=False, patient__merged_into__isnull=True).filter(scope.study_q())
            .order_by("-study_datetime").values_list("patient_id", flat=True)[:500]
        )
        qs = qs.filter(pk__in=Subquery(recent))
    at_sites = scope.study_q("studies__")
    qs = qs.annotate(n_studies=Count("studies", filter=at_sites),
                     last_study=Max("studies__study_datetime", filter=at_sites)).order_by(
        F("last_study").desc(nulls_last=True)
    )
    return [dict(r) for r in qs.values("pk", "patient_id", "issuer", "name", "sex", "birth_date", "n_studies", "last_study")[:limit]]


STUDY_LIST_FIELDS = (
    "pk", "study_instance_uid", "study_datetime", "accession_number", "study_description", "procedure_modality",
    "pregnancy_status", "pregnancy_status_override", "dap_total_gy_cm2", "dose_rp_max_plane_gy",
    "fluoro_time_total_s", "dlp_total_mgy_cm", "ctdivol_max_mgy", "event_count", "has_ionising_dose",
    "patient_weight_kg", "patient_age_years", "device_id", "not_patient_reason",
)


def patient_studies(*, patient_ids: list[int], limit: int = 1000, scope: SiteScope = EVERY_SITE) -> list[Study]:
    """All exams in time order (MR and other non-ionising exams included), 2 queries. ``scope``: at its sites only."""
    return list(
        Study.objects.filter(patient_id__in=patient_ids).filter(scope.study_q())
        .select_related("device")
        .prefetch_related(Prefetch("mr_exams", queryset=MRExam.objects.order_by("pk")))
        .order_by(F("study_datetime").asc(nulls_last=True), "pk")[:limit]
    )


def patient_history(*, patient: Patient, now: datetime | None = None, scope: SiteScope = EVERY_SITE) -> dict:
    """A patient's exams (of the whole merge group), cumulative windows and alerts. ``now`` is unused (kept for callers).

    ``scope`` (a site-scoped RSO): the exams, chart and alerts of its sites only; the cumulative windows stay
    the patient's totals over every site (what alert levels are measured against) and ``other_site_studies``
    counts the exams elsewhere that they include (one more query).
    """
    from . import integrations

    ids = patient_group_ids(patient.pk)
    studies = patient_studies(patient_ids=ids, scope=scope)
    other_site_studies = 0 if scope.unrestricted else Study.objects.filter(patient_id__in=ids).exclude(scope.study_q()).count()
    # computed by the exposure app only (Ka,r per reference point and plane, never summed across them); none yet
    # (before the first recompute) is shown as such, never replaced by sums made here
    windows = integrations.patient_windows(patient=patient)
    all_time = integrations.patient_all_time(patient=patient, group=ids)  # every site, like the windows
    chart = [
        {
            "t": s.study_datetime.isoformat() if s.study_datetime else None,
            "label": f"{s.study_datetime:%Y-%m-%d}" if s.study_datetime else "undated",
            "desc": s.study_description, "modality": s.procedure_modality,
            "kap": fmt.machine(s.dap_total_gy_cm2), "kar": fmt.machine(s.dose_rp_max_plane_gy), "dlp": fmt.machine(s.dlp_total_mgy_cm),
        }
        for s in studies
    ]
    accounts = list(PatientAccount.objects.filter(patient=patient).order_by("-invited_at").values(
        "pk", "invited_at", "expires_at", "verified_at", "revoked", "user__username")[:5])
    # peak skin dose per fluoroscopically guided procedure, cumulative (conservative sum) and per period (summed
    # maps where the geometry allows): over every site, as the cumulative windows
    skin = skin_selectors.patient_skin_dose_history(ids)
    for s in studies:
        s.skin = skin["procedures"].get(s.pk)  # type: ignore[attr-defined]
    return {
        "skin": skin,
        "patient": patient, "studies": studies, "windows": windows, "all_time": all_time, "windows_computed_at": max((w["computed_at"] for w in windows), default=None),
        "chart": chart, "alerts": integrations.patient_alerts(patient=patient, scope=scope), "accounts": accounts,
        "scope": scope, "other_site_studies": other_site_studies,
    }


RECEIVED_FIELDS = (("manufacturer", "Manufacturer"), ("model", "Model"), ("serial_number", "Serial number"),
                   ("station_name", "Station name"), ("device_observer_uid", "Device Observer UID"))


def received_identity_values(study: Study, objects) -> dict[str, Any]:
    """The identity as received (``study_received_identity``'s ``identity``), alone: what the API returns."""
    ident = study.received_identity
    ingested = [o for o in objects if o.status == DoseObject.STATUS_INGESTED]
    received: dict[str, Any] = {f: (getattr(ident, f) if ident is not None else None) for f, _ in RECEIVED_FIELDS}
    received["software_versions"] = list(dict.fromkeys(o.software_versions for o in ingested if o.software_versions))
    received["software_versions_not_recorded"] = sum(1 for o in ingested if o.software_versions is None)
    received["calling_ae_titles"] = list(dict.fromkeys(o.calling_ae for o in ingested if o.calling_ae))
    return received


def study_received_identity(study: Study, objects) -> dict:
    """The device identity as the study's reports carried it (``Study.received_identity``: manufacturer, model,
    serial, station, observer UID of its latest report; the Software Versions and calling AE titles of its ingested
    reports, in order received), beside the device it was resolved to. No query: the caller loads the study with
    ``received_identity`` and ``device`` and passes the study's objects (``calling_ae``, ``software_versions``).
    ``software_versions_not_recorded`` counts reports ingested before their version was kept (reprocess to fill)."""
    ident = study.received_identity
    device = study.device
    received = received_identity_values(study, objects)
    rows = []
    for f, label in RECEIVED_FIELDS:
        resolved = getattr(device, f) if device is not None else ""
        got = received[f]
        differs = ident is not None and device is not None and (got or "") != (resolved or "")
        rows.append({"label": label, "resolved": resolved, "received": got, "differs": differs})
    resolved_sw = device.software_versions if device is not None else ""
    rows.append({"label": "Software versions", "resolved": resolved_sw, "received": " · ".join(received["software_versions"]),
                 "differs": bool(received["software_versions"]) and bool(resolved_sw)
                 and received["software_versions"][-1] != resolved_sw})
    return {"identity": received, "recorded": ident is not None, "rows": rows}


def study_detail(*, study_pk: int, patient_ids: list[int] | None = None, event_limit: int = 2000,
                 scope: SiteScope = EVERY_SITE) -> dict | None:
    """One study with its events, planes, participants and objects. None when not found (or not the patient's,
    or not at the sites of ``scope``)."""
    from . import integrations

    qs = Study.objects.select_related("patient", "device", "received_identity").filter(scope.study_q())
    if patient_ids is not None:
        qs = qs.filter(patient_id__in=patient_ids)
    study = qs.filter(pk=study_pk).first()
    if study is None:
        return None
    objects = list(DoseObject.objects.filter(study=study).order_by("received_at").only(
        "pk", "sop_instance_uid", "status", "source_kind", "template_id", "received_at", "warnings",
        "superseded_by_id", "quarantine_reason", "calling_ae", "software_versions"))
    events = list(IrradiationEvent.objects.filter(study=study).order_by(F("datetime").asc(nulls_last=True), "pk")[:event_limit])
    return {
        "study": study,
        "events": events,
        "events_truncated": study.event_count > len(events) and len(events) == event_limit,
        "planes": list(PlaneTotal.objects.filter(study=study, dose_object__superseded_by__isnull=True,
                                                 dose_object__status=DoseObject.STATUS_INGESTED).order_by("plane")),
        "participants": list(Participant.objects.filter(study=study).order_by("role", "name")),
        "objects": objects,
        "received": study_received_identity(study, objects),
        "mr_exams": list(MRExam.objects.filter(study=study)),
        "alerts": integrations.study_alerts(study=study),
        # issue 16: mammography AGD per breast; NM/PET administrations (kept apart from the CT part)
        "breast_agd": registry_selectors.study_breast_agd(study.pk) if study.procedure_modality == "MG" else {},
        "nm_administrations": registry_selectors.study_nm_administrations(study.pk, age_years=study.patient_age_years)
        if study.procedure_modality in ("NM", "PT", "CT") else [],
    }


# ---------------------------------------------------------------------------
# patient portal
# ---------------------------------------------------------------------------
@dataclass
class PortalExam:
    study: Study
    device_type: str
    quantities: list[dict] = field(default_factory=list)
    effective_dose_msv: float | None = None
    background: str = ""
    skin: dict | None = None  # a fluoroscopically guided procedure's PSD above the first level: what to look for


def portal_exams(*, patient: Patient) -> list[PortalExam]:
    """The patient's own exams (the whole merge group) with patient-facing quantities (3 queries).

    Effective dose is the exposure app's estimate (``dosereg.exposure.effective_dose``, one factor table), shown
    only where it is complete."""
    from . import integrations

    ids = patient_group_ids(patient.pk)
    studies = patient_studies(patient_ids=ids)
    from_exposure = integrations.study_effective_doses(study_ids=[s.pk for s in studies if s.has_ionising_dose])
    skin = {p.study_id: p for p in skin_selectors.procedures_skin_dose(
        [s.pk for s in studies if s.procedure_modality in skin_selectors.FLUORO_GUIDED], with_cells=False)}
    first_level = integrations.psd_first_level_gy() if any(p.psd_gy is not None for p in skin.values()) else None
    out = []
    for s in reversed(studies):  # newest first for the patient
        exam = PortalExam(study=s, device_type=explain.device_type(s.procedure_modality))
        if s.has_ionising_dose:
            for key in ("dap_total_gy_cm2", "dose_rp_max_plane_gy", "fluoro_time_total_s", "ctdivol_max_mgy", "dlp_total_mgy_cm"):
                value = getattr(s, key)
                if value is not None:
                    q = explain.QUANTITIES[key]
                    exam.quantities.append({"q": q, "value": value, "display": fmt.value(key, value, q.unit)})
            e = from_exposure.get(s.pk)
            if e is not None:
                exam.effective_dose_msv = e
                exam.background = explain.background_phrase(e)
            p = skin.get(s.pk)
            if p is not None and p.psd_gy is not None and first_level is not None and p.psd_gy >= first_level:
                exam.skin = explain.skin_reaction(
                    psd_gy=p.psd_gy, where=p.location, institution=s.device.institution if s.device else "",
                    procedure_date=s.study_datetime)
        for mr in s.mr_exams.all():
            if mr.sar_w_kg is not None:
                exam.quantities.append({"q": explain.QUANTITIES["sar_w_kg"], "value": mr.sar_w_kg,
                                        "display": fmt.value("sar_w_kg", mr.sar_w_kg)})
        out.append(exam)
    return out


# ---------------------------------------------------------------------------
# RSO dashboard
# ---------------------------------------------------------------------------
def device_names() -> dict[int, str]:
    return {d.pk: str(d) for d in Device.objects.only("pk", "display_name", "manufacturer", "model", "station_name")}


def device_trends(*, now: datetime, weeks: int = 12, scope: SiteScope = EVERY_SITE) -> dict:
    """Procedures per week and mean KAP / Ka,r / fluoro time / DLP per procedure, per device (1 query)."""
    since = now - timedelta(weeks=weeks)
    rows = (
        Study.objects.filter(study_datetime__gte=since, study_datetime__lte=now, device__isnull=False, not_patient_reason="")
        .filter(scope.study_q())
        .annotate(week=TruncWeek("study_datetime", output_field=DateField()))  # a date: no time zone per row
        .values("device_id", "week")
        .annotate(n=Count("id"), kap=Avg("dap_total_gy_cm2"), kar=Avg("dose_rp_max_plane_gy"),
                  ft=Avg("fluoro_time_total_s"), dlp=Avg("dlp_total_mgy_cm"))
        .order_by()  # hashed groups, ordered here (a few hundred), not a sort of every study of the 12 weeks
    )
    # every week of the window (Mondays, as TruncWeek in the current time zone), not only weeks with data: a week
    # in which a device sent nothing is a 0 procedures (and no mean), so a device that fell silent shows
    first = timezone.localtime(since).date()
    first -= timedelta(days=first.weekday())
    last = timezone.localtime(now).date()
    all_weeks = [first + timedelta(weeks=i) for i in range((last - first).days // 7 + 1)]
    series: dict[int, list[dict]] = {}
    for r in sorted(rows, key=lambda r: (r["device_id"], r["week"])):
        wk = r["week"]
        series.setdefault(r["device_id"], []).append({"week": wk.isoformat(), "n": r["n"], **{
            k: fmt.machine(r[k]) for k in ("kap", "kar", "ft", "dlp")}})
    for dev_id, pts in series.items():
        have = {p["week"] for p in pts}
        pts.extend({"week": w.isoformat(), "n": 0, "kap": None, "kar": None, "ft": None, "dlp": None}
                   for w in all_weeks if w.isoformat() not in have)
        pts.sort(key=lambda p: p["week"])
    return {"weeks": [w.isoformat() for w in all_weeks], "series": series}


def ingest_health(*, now: datetime, days: int = 14, baseline_days: int = 28, scope: SiteScope = EVERY_SITE) -> dict:
    """Objects per device per day, silent devices, new devices and software versions (5 queries).

    ``scope``: the devices at its sites; objects not attributed to a device are counted for unscoped users only."""
    since = now - timedelta(days=days)
    per_day_rows = (
        DoseObject.objects.filter(received_at__gte=since).filter(scope.device_q())
        .annotate(day=TruncDate("received_at"))
        .values("device_id", "day")
        .annotate(n=Count("id"))
        .order_by("device_id", "day")
    )
    day_list = [(since + timedelta(days=i + 1)).date() for i in range(days)]
    per_day: dict[int | None, dict] = {}
    for r in per_day_rows:
        per_day.setdefault(r["device_id"], {})[r["day"]] = r["n"]
    base_since = now - timedelta(days=baseline_days)
    # objects in the baseline window per device (the received_at index bounds it; no scan of the whole history);
    # a device with none there is described by its last_seen
    base: dict[int | None, dict[str, Any]] = {r["device_id"]: dict(r) for r in DoseObject.objects.filter(received_at__gte=base_since).filter(scope.device_q())
            .values("device_id").annotate(n=Count("id"), last=Max("received_at")).order_by()}
    devices = list(Device.objects.filter(scope.device_q("pk")).order_by("pk"))
    rows, silent = [], []
    for d in devices:
        counts = per_day.get(d.pk, {})
        n_base: int = base.get(d.pk, {}).get("n", 0)
        d.n_base = n_base  # type: ignore[attr-defined]  # shown by the template
        last = base.get(d.pk, {}).get("last") or d.last_seen
        typical_gap_h = (baseline_days * 24 / n_base) if n_base else None
        # silent: nothing for more than 3 typical gaps (at least 2 days), for a device that normally sends
        is_silent = bool(
            last and n_base >= 3 and now - last > max(timedelta(days=2), timedelta(hours=3 * (typical_gap_h or 0)))
        )
        row = {"device": d, "days": [counts.get(day, 0) for day in day_list], "total": sum(counts.values()),
               "last": last, "typical_gap_h": typical_gap_h, "silent": is_silent,
               "new": d.first_seen >= since}
        rows.append(row)
        if is_silent:
            silent.append(row)
    unassigned = per_day.get(None, {})
    new_versions = list(
        DeviceSoftwareVersion.objects.filter(first_seen__gte=since).filter(scope.device_q()).select_related("device").order_by("-first_seen")[:50]
    )
    return {
        "days": day_list, "rows": rows, "silent": silent, "new_devices": [r["device"] for r in rows if r["new"]],
        "new_versions": new_versions, "unassigned_days": [unassigned.get(day, 0) for day in day_list],
        "unassigned_total": sum(unassigned.values()),
    }


def quarantine(*, limit: int = 50, scope: SiteScope = EVERY_SITE) -> dict:
    """Quarantined objects; ``scope``: those of devices at its sites (an object that could not be read has no
    device, so only unscoped users see it)."""
    qs = DoseObject.objects.filter(status=DoseObject.STATUS_QUARANTINED).filter(scope.device_q())
    return {
        "count": qs.count(),
        "objects": list(qs.order_by("-received_at").only(
            "pk", "sop_instance_uid", "calling_ae", "received_at", "quarantine_reason", "attempts", "size_bytes")[:limit]),
    }


def flagged_studies(*, limit: int = 10, scope: SiteScope = EVERY_SITE) -> dict:
    """Studies flagged at ingest (``Study.flags``) at the scope's sites: how many have dose values that could not be
    read, how many have any data-quality flag, and the newest of the former with their reasons (one query: the
    counts are window aggregates over the flagged studies, whose dose-unreadable ones come first)."""
    from django.db.models import Case, IntegerField, Value, When, Window

    from . import browse

    flagged = browse.flagged_studies(Study.objects.filter(scope.study_q()), "any")
    dose_q = Q()
    for marker in browse.DOSE_UNREADABLE_MARKERS:
        dose_q |= Q(_flags_text__icontains=marker)
    qs = (flagged.alias(_flags_text=Cast("flags", TextField()))
          .annotate(dose_unreadable=Case(When(dose_q, then=Value(1)), default=Value(0), output_field=IntegerField()))
          .annotate(n_any=Window(Count("pk")), n_dose=Window(Sum("dose_unreadable")))
          .select_related("patient", "device").only(
              "pk", "study_datetime", "procedure_modality", "study_description", "flags", "patient_id",
              "patient__patient_id", "device_id", "device__display_name", "device__manufacturer", "device__model",
              "device__station_name", "device__institution")
          .order_by("-dose_unreadable", F("study_datetime").desc(nulls_last=True), "-pk"))
    got = list(qs[:limit])
    rows = [s for s in got if s.dose_unreadable]
    for s in rows:
        s.dose_reasons = browse.dose_flags(s.flags)
    return {"dose_count": int(got[0].n_dose or 0) if got else 0, "any_count": got[0].n_any if got else 0, "rows": rows}


def pregnancy_studies(*, now: datetime, days: int = 90, limit: int = 25, scope: SiteScope = EVERY_SITE) -> list[Study]:
    since = now - timedelta(days=days)
    flt = PREGNANT_Q  # the condition of the partial index study_pregnant_recent
    return list(
        Study.objects.filter(flt, study_datetime__gte=since, has_ionising_dose=True).filter(scope.study_q())
        .select_related("patient", "device").order_by("-study_datetime")[:limit]
    )


def dashboard(*, now: datetime | None = None, user=None, scope: SiteScope | None = None) -> dict:
    """Everything on the RSO dashboard, for the sites of ``scope`` (default: the user's, or every site)."""
    from . import integrations

    now = now or timezone.now()
    if scope is None:
        scope = scope_for(user) if user is not None else EVERY_SITE
    names = device_names()
    trends = device_trends(now=now, scope=scope)
    ingest = ingest_health(now=now, scope=scope)
    # a device at the sites that sent no procedure in the whole window is drawn too, as a line at 0 (no query more:
    # the ingest rows hold the devices at the sites)
    for row in ingest["rows"]:
        if row["device"].pk not in trends["series"]:
            trends["series"][row["device"].pk] = [{"week": w, "n": 0, "kap": None, "kar": None, "ft": None, "dlp": None}
                                                  for w in trends["weeks"]]
    return {
        "now": now,
        "scope": scope,
        "top_patients": integrations.top_cumulative(limit=10, scope=scope),
        "pregnancy": pregnancy_studies(now=now, scope=scope),
        "trends": {"weeks": trends["weeks"], "devices": [
            {"id": dev_id, "name": names.get(dev_id, f"device {dev_id}"), "points": pts}
            for dev_id, pts in trends["series"].items()
        ]},
        "ingest": ingest,
        "quarantine": quarantine(scope=scope),
        "flagged": flagged_studies(scope=scope),
        "has_exposure": integrations.has_exposure(),
    }


# ---------------------------------------------------------------------------
# physicist protocol audit
# ---------------------------------------------------------------------------
class Percentile(Aggregate):
    """PostgreSQL percentile_cont(p) WITHIN GROUP (ORDER BY expr); on SQLite (the embedded default) the same
    interpolated percentile from ``SQLitePercentile``, registered on each SQLite connection by ``apps``."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(%(p)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, p: float, **extra):
        super().__init__(expression, p=float(p), **extra)

    def as_sqlite(self, compiler, connection, **extra_context):
        return self.as_sql(compiler, connection, function=SQLitePercentile.NAME,
                           template="%(function)s(%(expressions)s, %(p)s)", **extra_context)


class SQLitePercentile:
    """``percentile_cont`` as an SQLite aggregate (``sqlite3.Connection.create_aggregate``): linear interpolation
    between the closest ranks, NULLs ignored, NULL for no values (PostgreSQL's definition)."""

    NAME = "DOSEREG_PERCENTILE_CONT"

    def __init__(self) -> None:
        self.values: list[float] = []
        self.p = 0.5

    def step(self, value, p) -> None:
        self.p = float(p)
        if value is not None:
            self.values.append(float(value))

    def finalize(self) -> float | None:
        vals = sorted(self.values)
        if not vals:
            return None
        pos = self.p * (len(vals) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(vals) - 1)
        return vals[lo] + (vals[hi] - vals[lo]) * (pos - lo)

    @classmethod
    def register(cls, sender, connection, **kwargs) -> None:
        """``connection_created`` receiver: the aggregate on every new SQLite connection."""
        if connection.vendor == "sqlite":
            connection.connection.create_aggregate(cls.NAME, 2, cls)


def _standard_name_subquery():
    return Subquery(
        ProtocolMapping.objects.filter(source_name=OuterRef("study_description"), modality=OuterRef("procedure_modality"))
        .values("standard_name_id")[:1]
    )


def audit_studies(*, since: datetime, until: datetime, modality: str = "", device_id: int | None = None):
    # phantom / QA / test exposures (Study.not_patient_reason) are not procedures to audit
    qs = Study.objects.filter(study_datetime__gte=since, study_datetime__lt=until, has_ionising_dose=True,
                              not_patient_reason="")
    if modality:
        qs = qs.filter(procedure_modality=modality)
    if device_id:
        qs = qs.filter(device_id=device_id)
    return qs


def _quartiles(values: list[float]) -> tuple[float | None, float | None, float | None]:
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return None, None, None
    if len(vals) == 1:
        return vals[0], vals[0], vals[0]
    q = statistics.quantiles(vals, n=4, method="inclusive")  # same as percentile_cont
    return q[0], q[1], q[2]


def protocol_audit(*, since: datetime, until: datetime, modality: str = "", device_id: int | None = None,
                   drl_set_ids: list[int] | None = None) -> dict:
    """Per device x standard name (an unmapped vendor description: a row of its own; a paediatric age-band family:
    a row per band of the patients' ages, each compared with its band's DRL, and a row "age unknown" compared with
    none): count, quartiles of each quantity, DRL comparison and the study-browser query of the row and of each
    quantity (5 queries).

    Read from the monthly pre-aggregated summaries (``dosereg.protocols``), so the cost grows with devices x
    months x study descriptions, not with the number of studies. Counts, minimum and maximum are exact; the
    quartiles and the median come from histograms with bins 1 % wide and are within 0.5 % of the exact
    ``percentile_cont`` values (``histogram.MAX_RELATIVE_ERROR``). Studies not summarised yet (new, changed,
    or in a month cut by the period's ends) are read exactly in the same query, so nothing shown is stale.
    """
    from .audit_pages import group_filters, qs, quantity_filters

    groups: dict[AuditKey, dict] = {}
    for k, g in audit_groups(since=since, until=until, modality=modality, device_id=device_id).items():
        r: dict[str, Any] = {"n": g.n}
        for key, _, _ in AUDIT_QUANTITIES:
            s = g.quantities.get(key)
            r[f"{key}__n"] = s.n if s else 0
            r[f"{key}__min"] = s.minimum if s else None
            r[f"{key}__max"] = s.maximum if s else None
            r[f"{key}__q1"], r[f"{key}__med"], r[f"{key}__q3"] = s.quartiles() if s else (None, None, None)
        groups[k] = r
    std_names = {s.pk: s for s in StandardName.objects.all()}
    by_name = {(s.modality, s.name): s for s in std_names.values()}
    drl_qs = DRLValue.objects.select_related("drl_set").filter(drl_set__active=True)
    if drl_set_ids:
        drl_qs = drl_qs.filter(drl_set_id__in=drl_set_ids)
    drls: dict[tuple[int, str], list[DRLValue]] = {}
    for v in drl_qs:
        drls.setdefault((v.standard_name_id, v.quantity), []).append(v)
    names = device_names()
    rows = []
    for (dev_id, std_id, mod, descr, family, band_key), r in groups.items():
        fam = age_bands.FAMILY_BY_NAME.get(family) if family else None
        band = fam.band(band_key) if fam else None
        if fam is not None:
            # a band row is compared with its band's DRLs (the band's standard name); the age-unknown row with none
            std = by_name.get((fam.modality, fam.band_name(band))) if band else by_name.get((fam.modality, fam.name))
            drl_std_id = std.pk if (std is not None and band is not None) else None
            label = fam.band_name(band) if band else f"{fam.name}, {age_bands.UNKNOWN_LABEL}"
        else:
            std = std_names.get(std_id) if std_id else None
            drl_std_id = std_id
            label = std.name if std is not None else ""
        min_n = MIN_SAMPLE.get(mod or "", 20)
        gq = group_filters(since=since, until=until, modality=mod, device_id=dev_id, std_id=std_id, description=descr,
                           family=family, age_band=band_key)
        qrows = []
        for key, label_q, unit in AUDIT_QUANTITIES:
            if not r.get(f"{key}__n"):
                continue
            comp = []
            for v in drls.get((drl_std_id, key), []) if drl_std_id else []:
                med = r[f"{key}__med"]
                comp.append({"drl": v, "ratio": (med / v.value) if (med is not None and v.value) else None,
                             "above": med is not None and med > v.value})
            qrows.append({"key": key, "label": label_q, "unit": unit, "n": r[f"{key}__n"], "q1": r[f"{key}__q1"],
                          "median": r[f"{key}__med"], "q3": r[f"{key}__q3"], "min": r[f"{key}__min"],
                          "max": r[f"{key}__max"], "drls": comp, "query": qs(quantity_filters(gq, key))})
        rows.append({
            "device_id": dev_id, "device": names.get(dev_id, "unknown device") if dev_id else "unknown device",
            "standard_name": std, "modality": mod, "n": r["n"], "label": label,
            "min_n": min_n, "too_small": r["n"] < min_n, "quantities": qrows, "description": descr,
            "family": family, "age_band": band_key, "age_band_label": band.label if band else (
                age_bands.UNKNOWN_LABEL if fam else ""), "age_unknown": bool(fam) and band is None,
            "band_order": (fam.bands.index(band) if band else len(fam.bands)) if fam is not None else 0,
            "query": qs(gq),
        })
    rows.sort(key=lambda x: (not x["family"] and x["standard_name"] is None, x["family"] or x["label"], x["device"],
                             x["band_order"], x["description"]))
    return {"rows": rows, "drl_sets": list(DRLSet.objects.all()), "since": since, "until": until}


def distribution(*, since: datetime, until: datetime, quantity: str, device_id: int | None, standard_name_id: int | None,
                 limit: int = 20000) -> list[float]:
    """Raw values of one group for histograms (bounded)."""
    assert quantity in {k for k, _, _ in AUDIT_QUANTITIES}
    qs = audit_studies(since=since, until=until, device_id=device_id).annotate(std=_standard_name_subquery())
    qs = qs.filter(std=standard_name_id) if standard_name_id else qs.filter(std__isnull=True)
    return [v for v in qs.exclude(**{f"{quantity}__isnull": True}).values_list(quantity, flat=True)[:limit]]


def name_mappings(*, since: datetime, limit: int = 500, scope: SiteScope = EVERY_SITE) -> dict:
    """Distinct vendor study names with their mapping (or a suggestion), most frequent first (3 queries)."""
    names = list(
        Study.objects.filter(study_datetime__gte=since, has_ionising_dose=True, not_patient_reason="").filter(scope.study_q())
        .values("procedure_modality", "study_description").annotate(n=Count("id")).order_by("-n")[:limit]
    )
    mappings = {(m.modality, m.source_name): m for m in ProtocolMapping.objects.select_related("standard_name")}
    standards = list(StandardName.objects.all())
    from .services import suggestion_for

    out = []
    for r in names:
        m = mappings.get((r["procedure_modality"], r["study_description"]))
        sugg = None if m else suggestion_for(r["study_description"], r["procedure_modality"], standards)
        out.append({
            "modality": r["procedure_modality"], "source_name": r["study_description"], "n": r["n"],
            "mapping": m, "suggestion": sugg.key if sugg else None,
            "confidence": round(sugg.confidence * 100) if sugg else None,
            "key": f"{r['procedure_modality']}:{r['study_description']}",
        })
    return {"names": out, "standards": standards}


def fluoro_technique(*, since: datetime, until: datetime, device_id: int | None = None,
                     scope: SiteScope = EVERY_SITE) -> dict:
    """Fluoroscopy technique per device: pulse rates, dose modes, frames, field size (3 queries)."""
    ev = (IrradiationEvent.objects.filter(study__study_datetime__gte=since, study__study_datetime__lt=until,
                                          study__procedure_modality__in=("RF", "XA"), study__not_patient_reason="")
          .filter(scope.study_q("study__")))
    if device_id:
        ev = ev.filter(study__device_id=device_id)
    pulse: list[dict[str, Any]] = [dict(r) for r in ev.filter(event_type="fluoroscopy").values("study__device_id", "fluoro_mode", "pulse_rate_per_s")
                 .annotate(n=Count("id"), seconds=Sum("irradiation_duration_s"), kap=Sum("dap_gy_cm2"))
                 .order_by("study__device_id", "fluoro_mode", "pulse_rate_per_s")]
    modes: list[dict[str, Any]] = [dict(r) for r in ev.values("study__device_id", "event_type", "dose_mode")
                 .annotate(n=Count("id"), kap=Sum("dap_gy_cm2"), frames=Sum("number_of_frames"),
                           field=Avg("collimated_field_area_m2"))
                 .order_by("study__device_id", "event_type", "-n")]
    names = device_names()
    for r in pulse + modes:
        r["device"] = names.get(r["study__device_id"], "unknown device")
    return {"pulse": pulse, "modes": modes}
