"""Reading cases: the worklist, its counts, the due list, one case in context, the CSV rows.

Every function reads a fixed number of queries whatever the number of cases (asserted in tests/cases).
Site scope (``dosereg.web.scope``): a case is at the site of the study that opened it (``Case.site``, the
normalised institution), a staff case at its staff member's site.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import cast

from django.db.models import Count, F, Q, Sum
from django.utils import timezone

from dosereg.access.scope import EVERY_SITE, SiteScope

from . import conf
from .formatting import fmt_value, level_name, public_text
from .models import ACTIVE_STATUSES, KIND_CHOICES, KIND_STAFF, STATUS_CHOICES, STATUS_FOLLOW_UP, Case, CaseAlert, CaseEvent

SEVERITIES = ("high", "normal", "low")
ORDER = (F("sort_rank").desc(), F("exam_date").desc(nulls_last=True), F("id").desc())


@dataclass(frozen=True)
class CaseScope:
    """What of the cases a user reads: the sites (``dosereg.web.scope``) and whether staff (occupational) cases,
    which only the staff overview's roles (RSO, admin) see, like the staff overview itself."""

    sites: SiteScope = EVERY_SITE
    staff: bool = True


def case_scope(user) -> CaseScope:
    from dosereg.access import roles
    from dosereg.access.scope import scope_for

    return CaseScope(scope_for(user), roles.has_role(user, roles.STAFF_OVERVIEW))


def _sites(scope) -> SiteScope:
    return scope.sites if isinstance(scope, CaseScope) else scope


def scoped(scope: SiteScope | CaseScope = EVERY_SITE, base=None):
    """``base`` (default every case) within ``scope``; ``base`` may be another model with ``kind`` and ``site``
    (``CaseCount``)."""
    qs = Case.objects.all() if base is None else base
    if isinstance(scope, CaseScope):
        if not scope.staff:
            qs = qs.exclude(kind=KIND_STAFF)
        scope = scope.sites
    if scope.unrestricted:
        return qs
    if not scope.sites:
        return qs.none()
    return qs.filter(site__in=sorted(scope.sites))


@dataclass
class Filters:
    kind: str = ""
    severity: str = ""
    status: str = "active"          # active (open + acknowledged + follow-up), all, or one status
    site: str = ""
    device: int | None = None
    modality: str = ""
    rule: str = ""
    date_from: date | None = None
    date_to: date | None = None
    q: str = ""                     # patient id / name, staff name
    page: int = 1
    errors: list[str] = field(default_factory=list)

    def apply(self, qs):
        if self.status == "active":
            qs = qs.filter(status__in=ACTIVE_STATUSES)
        elif self.status != "all":
            qs = qs.filter(status=self.status)
        if self.kind:
            qs = qs.filter(kind=self.kind)
        if self.severity:
            # severity is the tens of sort_rank (services.sort_rank): the range keeps the worklist index in use
            lo = {"high": 20, "normal": 10, "low": 0}[self.severity]
            qs = qs.filter(severity=self.severity, sort_rank__gte=lo, sort_rank__lt=lo + 10)
        if self.site:
            qs = qs.filter(site=self.site.strip().lower())
        if self.device:
            qs = qs.filter(device_id=self.device)
        if self.modality:
            qs = qs.filter(modality=self.modality)
        if self.rule:
            qs = qs.filter(rule_keys__contains=f",{self.rule},")
        tz = timezone.get_current_timezone()
        if self.date_from:
            qs = qs.filter(exam_date__gte=datetime.combine(self.date_from, time.min, tzinfo=tz))
        if self.date_to:
            qs = qs.filter(exam_date__lt=datetime.combine(self.date_to + timedelta(days=1), time.min, tzinfo=tz))
        if self.q:
            # the patients (and staff) matching first (trigram indexes: worklist_indexes.SEARCH_INDEXES), then their
            # cases through the case_patient index
            pats = list(search_patients(self.q).values_list("pk", flat=True)[:500])
            staff = list(search_staff(self.q).values_list("pk", flat=True)[:100])
            qs = qs.filter(Q(patient_id__in=pats) | Q(staff_id__in=staff))
        return qs

    def querystring(self, **override) -> str:
        from urllib.parse import urlencode

        d = {"kind": self.kind, "severity": self.severity, "status": "" if self.status == "active" else self.status,
             "site": self.site, "device": self.device or "", "modality": self.modality, "rule": self.rule,
             "from": self.date_from.isoformat() if self.date_from else "", "to": self.date_to.isoformat() if self.date_to else "",
             "q": self.q}
        d.update(override)
        return urlencode({k: v for k, v in d.items() if v not in ("", None)})


def _pn_form(q: str) -> str:
    words = q.replace(",", " ").split()
    return "^".join(reversed(words)) if len(words) == 2 else q  # "Jonas Fischer" -> "Fischer^Jonas"


def search_patients(q: str):
    """Patients whose ID starts with ``q`` or whose name holds it (as typed, or "Given Family" as DICOM's
    "Family^Given"), case-insensitive."""
    from dosereg.registry.models import Patient

    return Patient.objects.filter(Q(patient_id__istartswith=q) | Q(name__icontains=q) | Q(name__icontains=_pn_form(q)))


def search_staff(q: str):
    from dosereg.staff.models import StaffMember

    return StaffMember.objects.filter(Q(name__icontains=q) | Q(name__icontains=_pn_form(q)))


def counts(scope: SiteScope = EVERY_SITE) -> dict:
    """The true counts of active cases: total, per severity, not yet acknowledged, pregnancy, staff, follow-ups due
    within 7 days, opened without e-mail (old exams). On PostgreSQL 2 queries whatever the number of cases: the
    sums of the trigger-kept deltas (``case_counts``), and the follow-ups due from the case_due index; elsewhere one
    grouped scan of the active cases."""
    from .case_counts import kept
    from .models import CaseCount

    soon = timezone.localdate() + timedelta(days=7)
    out = dict.fromkeys(("total", "high", "normal", "low", "open", "pregnancy", "staff", "due", "historical"), 0)
    if kept():
        due_n = scoped(scope).filter(status=STATUS_FOLLOW_UP, follow_up_due__lte=soon).count()
        rows = [(*r, 0) for r in scoped(scope, CaseCount.objects.filter(status__in=ACTIVE_STATUSES)).order_by()
                .values_list("severity", "kind", "status", "notify_state").annotate(n=Sum("n"))]
        out["due"] = due_n
    else:
        rows = list(scoped(scope).filter(status__in=ACTIVE_STATUSES).order_by()
                    .values_list("severity", "kind", "status", "notify_state")
                    .annotate(n=Count("id"), due=Count("id", filter=Q(status=STATUS_FOLLOW_UP, follow_up_due__lte=soon))))
    for severity, kind, status, notify_state, n, due in rows:
        out["total"] += n
        if severity in SEVERITIES:
            out[severity] += n
        out["open"] += n if status == "open" else 0
        out["pregnancy"] += n if kind == "pregnancy" else 0
        out["staff"] += n if kind == "staff" else 0
        out["historical"] += n if notify_state == "historical" else 0
        out["due"] += due
    return out


def kept_total(scope: SiteScope | CaseScope, f: Filters) -> int | None:
    """The number of cases a filter on kind, severity, status, site, device and modality, or on kind, severity,
    status, site and rule, only matches, from the kept counts (one query on a few hundred rows); None for any other
    filter (exam dates, search, the rule with a device or modality) or without kept counts: count the cases."""
    from .case_counts import kept
    from .models import CaseCount, CaseRuleCount

    if not kept() or f.date_from or f.date_to or f.q or (f.rule and (f.device or f.modality or "," in f.rule)):
        return None
    qs = scoped(scope, CaseRuleCount.objects.filter(rule_key=f.rule) if f.rule else CaseCount.objects.all())
    if f.status == "active":
        qs = qs.filter(status__in=ACTIVE_STATUSES)
    elif f.status != "all":
        qs = qs.filter(status=f.status)
    if f.kind:
        qs = qs.filter(kind=f.kind)
    if f.severity:
        qs = qs.filter(severity=f.severity)
    if f.site:
        qs = qs.filter(site=f.site.strip().lower())
    if f.device:
        qs = qs.filter(device_id=f.device)
    if f.modality:
        qs = qs.filter(modality=f.modality)
    return int(qs.aggregate(n=Sum("n"))["n"] or 0)


def _page(qs, order, start: int, size: int) -> list[Case]:
    """Rows ``start`` .. ``start + size`` of ``qs`` in ``order``, in one query as a deferred join: the page's ids
    come from the ordered index alone (an index-only scan skips the rows before the page without reading them or
    joining their patient and device), then only the page's rows are read with their joins. A deep page (page 40)
    costs about what page 1 does."""
    ids = qs.order_by(*order).values("pk")[start:start + size]
    return list(Case.objects.filter(pk__in=ids).select_related("patient", "device", "staff").order_by(*order))


def worklist(*, scope: SiteScope = EVERY_SITE, filters: Filters | None = None, page_size: int | None = None) -> dict:
    """One page of the worklist: 5 queries on PostgreSQL (total, the counts' two, page, filter options) plus the
    scope's own; the default view's total is the counts' (4)."""
    f = filters or Filters()
    size = page_size or conf.worklist_page_size()
    qs = f.apply(scoped(scope))
    cnt = counts(scope)
    # the default view's total is the active count; a filter on what the counts are kept by reads them too
    total = cnt["total"] if f.querystring() == "" else kept_total(scope, f)
    if total is None:
        total = qs.count()
    pages = max(1, -(-total // size))
    page = min(max(1, f.page), pages)
    rows = _page(qs, ORDER, (page - 1) * size, size)
    return {
        "rows": [row(c) for c in rows], "total": total, "page": page, "pages": pages, "page_size": size,
        "counts": cnt, "filters": f, "options": options(scope),
        "has_prev": page > 1, "has_next": page < pages,
        "prev_qs": f.querystring(page=page - 1), "next_qs": f.querystring(page=page + 1),
        "export_qs": f.querystring(),
    }


def options(scope: SiteScope) -> dict:
    """Filter choices: the devices (and their sites) of the scope, one query over the device table."""
    from dosereg.registry.models import Device
    from dosereg.access.scope import normalise

    rows = list(Device.objects.filter(_sites(scope).device_q("pk")).order_by("institution", "display_name", "pk")
                .values_list("pk", "display_name", "station_name", "institution")[:500])
    devices = [(d, n or s or f"device {d}") for d, n, s, _ in rows]
    sites = sorted({normalise(i) for *_, i in rows if i and i.strip()})
    return {"kinds": KIND_CHOICES, "severities": SEVERITIES, "statuses": [("active", "Active"), ("all", "All")] + STATUS_CHOICES,
            "devices": devices, "sites": sites, "modalities": ("CT", "XA", "RF", "DX", "CR", "MG", "NM", "PT")}


def dashboard(*, scope: SiteScope = EVERY_SITE, limit: int = 10) -> dict:
    """The top of the worklist (the same rows, in the same order, as its first page), its counts and the first
    follow-ups due, for the dashboard (3 queries)."""
    qs = Filters().apply(scoped(scope))
    return {"rows": [row(c) for c in _page(qs, ORDER, 0, limit)], "counts": counts(scope), "due": due_list(scope=scope, limit=limit)}


DUE_ORDER = ("follow_up_due", "id")


def _due_rows(cases: list[Case]) -> list[dict]:
    today = timezone.localdate()
    out = []
    for c in cases:
        r = row(c)
        r["overdue"] = bool(c.follow_up_due and c.follow_up_due < today)
        r["due_today"] = c.follow_up_due == today
        out.append(r)
    return out


def due_list(*, scope: SiteScope = EVERY_SITE, limit: int = 200) -> list[dict]:
    """The first ``limit`` cases in follow-up, earliest due date first (overdue on top): 1 query."""
    return _due_rows(_page(scoped(scope).filter(status=STATUS_FOLLOW_UP), DUE_ORDER, 0, limit))


def due_page(*, scope: SiteScope = EVERY_SITE, page: int = 1, page_size: int | None = None) -> dict:
    """One page of the follow-up list, none hidden: 2 queries (the count from the case_due index, the page)."""
    size = page_size or conf.worklist_page_size()
    qs = scoped(scope).filter(status=STATUS_FOLLOW_UP)
    total = qs.count()
    pages = max(1, -(-total // size))
    page = min(max(1, page), pages)
    return {"rows": _due_rows(_page(qs, DUE_ORDER, (page - 1) * size, size)), "total": total, "page": page, "pages": pages,
            "has_prev": page > 1, "has_next": page < pages, "prev_qs": f"page={page - 1}", "next_qs": f"page={page + 1}"}


def person_name(pn: str | None) -> str:
    """DICOM PN "Family^Given^Middle^Prefix^Suffix" as "Given Middle Family"; other text unchanged."""
    if not pn:
        return ""
    if "^" not in pn:
        return pn.strip()
    parts = (pn.split("=", 1)[0].split("^") + [""] * 5)[:5]
    family, given, middle, prefix, suffix = (p.strip() for p in parts)
    return " ".join(x for x in (prefix, given, middle, family, suffix) if x)


def row(c: Case) -> dict:
    who = ""
    if c.patient_id and c.patient is not None:
        name = "" if c.patient.pseudonymised else person_name(c.patient.name)
        who = c.patient.patient_id + (f" · {name}" if name else "")
    elif c.staff_id and c.staff is not None:
        who = person_name(c.staff.name)
    return {
        "id": c.pk, "kind": c.kind, "kind_label": c.get_kind_display(), "status": c.status, "status_label": c.get_status_display(),
        "severity": c.severity, "title": c.title.split(": ", 1)[-1], "exam_date": c.exam_date, "opened_at": c.opened_at,
        "patient_pk": c.patient_id, "staff_pk": c.staff_id, "who": who, "levels": c.level_count,
        "device": (c.device.display_name or c.device.station_name or f"device {c.device_id}") if c.device_id and c.device else "",
        "site": c.site, "modality": c.modality, "notify_state": c.notify_state, "notify_note": c.notify_note,
        "due": c.follow_up_due, "study_pk": c.study_id, "top_level": level_name(c.top_level) if c.top_level else "",
    }


# ---------------------------------------------------------------------------
# one case
# ---------------------------------------------------------------------------
def case_get(*, case_id: int, scope: SiteScope | CaseScope = EVERY_SITE) -> Case | None:
    return (scoped(scope).select_related("patient", "study", "device", "staff__site", "acknowledged_by", "closed_by")
            .filter(pk=case_id).first())


def case_detail(*, case_id: int, scope: SiteScope | CaseScope = EVERY_SITE, max_levels: int = 200) -> dict | None:
    """A case in context: 7 queries (case, levels, timeline, operators, incident, rules, Ka,r) plus the scope's own."""
    from dosereg.exposure.constants import conceptus_band

    from .services import top_key

    case = case_get(case_id=case_id, scope=scope)
    if case is None:
        return None
    members = list(CaseAlert.objects.filter(case=case).select_related("alert__rule__ruleset", "staff_alert")
                   .order_by("added_at", "id")[:max_levels])
    levels = []
    reason = ""
    pregnancy = {}
    dose_checks = []
    for m in members:
        a = m.alert
        if a is not None:
            d = a.detail or {}
            levels.append({
                "rule": d.get("rule_title") or a.rule_key, "rule_key": a.rule_key, "level": level_name(a.level),
                "value": fmt_value(a.quantity, a.value) if a.value is not None else "",
                "threshold": fmt_value(a.quantity, a.threshold) if a.threshold is not None else "",
                "window_days": a.window_days, "at": a.raised_at, "status": a.status, "severity": a.severity,
                "source": public_text(d.get("source") or (a.rule.source if a.rule_id else "")),
                "verification": d.get("verification") or (a.rule.verification if a.rule_id else ""),
                "rule_version": d.get("rule_version"), "alert_id": a.pk, "sort": (0, -top_key(a)[1], a.rule_key, a.threshold or 0),
                "kar_planes": d.get("kar_per_reference_point_and_plane") or [],
            })
            if d.get("reason_for_proceeding"):
                reason = d["reason_for_proceeding"]
            if d.get("dose_checks"):
                dose_checks = d["dose_checks"]
            if a.quantity == "pregnancy":
                pregnancy = {"status": d.get("pregnancy_status", "").replace("_", " "), "source": d.get("status_source", ""),
                             "priority": d.get("priority"), "reasons": d.get("priority_reasons") or [],
                             "regions": d.get("regions") or [], "bands": [public_text(x) for x in (d.get("conceptus_dose_bands") or "").splitlines()],
                             "estimate": a.conceptus_dose_estimate_mgy,
                             "estimate_band": public_text(conceptus_band(a.conceptus_dose_estimate_mgy)) if a.conceptus_dose_estimate_mgy is not None else ""}
        elif m.staff_alert is not None:
            s = m.staff_alert
            levels.append({
                "rule": s.rule, "rule_key": s.rule, "level": s.level, "value": f"{s.value_msv:.3g} mSv",
                "threshold": f"{s.threshold_msv:g} mSv", "window_days": None, "at": s.created_at, "status": s.status,
                "severity": "high" if s.level in ("II", "exceeded") else "normal",
                "source": public_text((s.setting or {}).get("citation", "")), "verification": (s.setting or {}).get("verification", ""),
                "rule_version": (s.setting or {}).get("version"), "alert_id": None, "sort": (1, 0, s.rule, s.threshold_msv),
                "kar_planes": [], "period": s.period,
            })
    levels.sort(key=lambda lv: cast(tuple, lv["sort"]))  # (rank, ...) tuples
    events = list(CaseEvent.objects.filter(case=case).select_related("actor").order_by("at", "id"))
    operators = []
    if case.study_id:
        from dosereg.staff.models import Participation

        operators = [{"name": person_name(p.staff.name), "role": p.get_role_display(), "staff_pk": p.staff_id}
                     for p in Participation.objects.filter(study_id=case.study_id).select_related("staff").order_by("role", "id")[:20]]
    study = case.study
    return {**incident_context(case),
        "case": case, "row": row(case), "levels": levels, "events": events, "operators": operators, "study": study,
        "reason_for_proceeding": reason, "dose_checks": dose_checks, "pregnancy": pregnancy,
        "levels_truncated": len(members) >= max_levels, "today": timezone.localdate(),
    }


def csv_rows(*, scope: SiteScope = EVERY_SITE, filters: Filters | None = None, limit: int = 100000):
    """(header, rows) of the filtered worklist for CSV export, streamed in pages of 2000."""
    f = filters or Filters()
    header = ["case", "kind", "severity", "status", "exam_date", "patient_id", "staff", "site", "device", "modality",
              "highest_level", "levels", "opened_at", "e-mail", "follow_up_due", "acknowledged_at", "closed_at", "outcome"]

    def gen():
        qs = f.apply(scoped(scope)).select_related("patient", "device", "staff").order_by(*ORDER)
        for c in qs[:limit].iterator(chunk_size=2000):
            yield [c.pk, c.kind, c.severity, c.status, c.exam_date.isoformat() if c.exam_date else "",
                   c.patient.patient_id if c.patient_id and c.patient else "", person_name(c.staff.name) if c.staff_id else "",
                   c.site, (c.device.display_name or c.device.station_name) if c.device_id and c.device else "", c.modality,
                   c.title.split(": ", 1)[-1], c.level_count, c.opened_at.isoformat(), c.notify_state,
                   c.follow_up_due.isoformat() if c.follow_up_due else "", c.acknowledged_at.isoformat() if c.acknowledged_at else "",
                   c.closed_at.isoformat() if c.closed_at else "", "; ".join(f"{k}={v}" for k, v in (c.outcome or {}).items())]
    return header, gen()


def export_patient_pks(*, scope: SiteScope = EVERY_SITE, filters: Filters | None = None, limit: int = 100000) -> list[int]:
    """The patients an export of the filtered worklist shows (for the audit trail): one query."""
    f = filters or Filters()
    return list(f.apply(scoped(scope)).filter(patient__isnull=False).order_by().values_list("patient_id", flat=True)
                .distinct()[:limit])


def patient_pks(rows: list[dict]) -> set[int]:
    return {r["patient_pk"] for r in rows if r.get("patient_pk")}


# ---------------------------------------------------------------------------
# incident register
# ---------------------------------------------------------------------------
def incident_context(case: Case) -> dict:
    """The case's incident (or the rules its skin dose reaches, and the rules to choose from): 2-3 queries."""
    from .incidents import rules_met
    from .models import INCIDENT_CATEGORIES, Incident, ReportableRule

    inc = Incident.objects.filter(case=case).select_related("declared_by", "signed_off_by").first()
    rules = list(ReportableRule.objects.filter(active=True).order_by("key"))
    return {"incident": inc, "rules": rules, "rules_met": [] if inc else rules_met(case, rules),
            "categories": INCIDENT_CATEGORIES}


def _incidents_qs(scope: SiteScope | CaseScope):
    from .models import Incident

    return Incident.objects.filter(case__in=scoped(scope).values("pk")).select_related(
        "case__patient", "case__device", "declared_by", "signed_off_by")


def incidents(*, scope: SiteScope = EVERY_SITE, year: int | None = None, limit: int = 1000) -> list:
    qs = _incidents_qs(scope)
    if year:
        qs = qs.filter(year=year)
    return list(qs.order_by("-declared_at", "-id")[:limit])


def incident_get(*, case_id: int, scope: SiteScope | CaseScope = EVERY_SITE):
    """The incident of one case within ``scope`` (None when there is none, or the case is another site's): 1 query."""
    return _incidents_qs(scope).filter(case_id=case_id).first()


DOSE_BASIS_LABEL = {"psd": "peak skin dose", "kar": "Ka,r (no PSD)"}


def dose_basis(inc) -> dict:
    """Which skin dose quantity the incident was judged on, said in words: the peak skin dose (PSD) estimate where
    the physicist recorded one, the reference air kerma Ka,r otherwise (and that it is not the skin dose)."""
    from dosereg import formatting as fmt

    value = "" if inc.dose_gy is None else f"{fmt.number(inc.dose_gy)} Gy"
    if inc.dose_basis == "psd":
        return {"basis": "psd", "label": "Peak skin dose (PSD) estimate", "value": value,
                "note": "Peak skin dose estimated and recorded by the physicist. This incident was assessed on the PSD, not on Ka,r."}
    if inc.dose_basis == "kar":
        return {"basis": "kar", "label": "Ka,r (reference air kerma; no PSD estimate recorded)", "value": value,
                "note": "No peak skin dose estimate was recorded, so this incident was assessed on Ka,r, the air kerma at the "
                        "reference point. Ka,r is not the skin dose: it can overstate it (beam moved between projections) "
                        "or understate it."}
    return {"basis": "", "label": "No skin dose quantity", "value": "",
            "note": "No skin dose quantity is recorded for this case; the incident was declared by judgement."}


def incident_years(*, scope: SiteScope = EVERY_SITE) -> list[int]:
    from .models import Incident

    return list(Incident.objects.filter(case__in=scoped(scope).values("pk")).order_by("-year").values_list("year", flat=True).distinct())


def incident_csv(rows) -> tuple[list[str], list[list]]:
    """(header, rows) of incidents; ``dose_basis`` says whether the peak skin dose or Ka,r was used, and the last
    column why (``dose_basis_note``)."""
    header = ["incident", "year", "declared_at", "declared_by", "category", "rule", "rule_version", "jurisdiction", "case",
              "exam_date", "patient_id", "device", "dose_basis", "dose_gy", "summary", "status", "physicist_sign_off",
              "signed_off_at", "regulator_reference", "reported_at", "investigation_notes", "dose_basis_note"]
    out = []
    for i in rows:
        c = i.case
        out.append([i.number, i.year, i.declared_at.isoformat(), i.declared_by.get_username() if i.declared_by else "",
                    i.get_category_display(), i.rule_snapshot.get("key", ""), i.rule_snapshot.get("version", ""),
                    i.rule_snapshot.get("jurisdiction", ""), c.pk, c.exam_date.isoformat() if c.exam_date else "",
                    c.patient.patient_id if c.patient_id and c.patient else "",
                    (c.device.display_name or c.device.station_name) if c.device_id and c.device else "",
                    DOSE_BASIS_LABEL.get(i.dose_basis, ""), "" if i.dose_gy is None else f"{i.dose_gy:.3g}",
                    i.summary, i.get_status_display(), i.signed_off_by.get_username() if i.signed_off_by else "",
                    i.signed_off_at.isoformat() if i.signed_off_at else "", i.regulator_reference,
                    i.reported_at.isoformat() if i.reported_at else "", i.investigation_notes, dose_basis(i)["note"]])
    return header, out
