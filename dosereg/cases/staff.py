"""The RSO's view of staff: people with their doses this year against the annual limits and this quarter against
the investigation levels, names as names, their open cases. Reads only (staff dose writes are the staff app's).

Per page of people: 3 queries for the page (members, open staff cases, settings) plus 2 per person (readings and
effective doses, as ``dosereg.staff.occupational.wear_period_doses`` reads them): bounded by the page size.
"""
from __future__ import annotations

from django.db.models import Count
from django.utils import timezone

from .models import ACTIVE_STATUSES, KIND_STAFF, Case
from .selectors import person_name

QUANTITIES = [("effective", "Effective dose"), ("lens", "Eye lens Hp(3)"), ("extremity", "Extremity Hp(0.07)")]
PAGE = 50


class _Settings:
    """Staff settings resolved once per (key, regime, site) for a page."""

    def __init__(self):
        self._memo = {}

    def value(self, key, regime, site):
        from dosereg.staff import config

        k = (key, regime, site.pk if site else None)
        if k not in self._memo:
            sv = config.setting(key, regime=regime, site=site, default=None)
            self._memo[k] = (float(sv.value), sv) if sv is not None else (None, None)
        return self._memo[k]


def _doses(member, settings: _Settings, today) -> list[dict]:
    from dosereg.staff.config import site_for
    from dosereg.staff.occupational import period_totals, quarter_key, wear_period_doses

    site = site_for(member)
    regime = site.limit_regime if site else ""
    totals = period_totals(wear_period_doses(member))
    year = totals["year"].get(str(today.year), {})
    quarter = totals["quarter"].get(quarter_key(today), {})
    out = []
    for q, label in QUANTITIES:
        limit, lsv = settings.value(f"limit.{q}.annual", regime, site)
        inv, isv = settings.value(f"investigation.{q}.I", regime, site)
        y = year.get(q)
        qq = quarter.get(q)
        yv = y.msv if y is not None else None
        qv = qq.msv if qq is not None else None
        out.append({
            "quantity": q, "label": label, "year_msv": yv, "limit_msv": limit,
            "percent": (yv / limit * 100) if (yv is not None and limit) else None,
            "quarter_msv": qv, "investigation_msv": inv, "over_investigation": bool(qv is not None and inv is not None and qv >= inv),
            "limit_source": (lsv.citation if lsv else ""), "censored": bool(y is not None and getattr(y, "censored", False)),
        })
    return out


def staff_overview(*, page: int = 1, q: str = "") -> dict:
    from dosereg.staff.models import StaffMember

    if q:
        qs = StaffMember.objects.filter(active=True, name__icontains=q.replace(" ", "^")) | StaffMember.objects.filter(active=True, name__icontains=q)
    else:
        qs = StaffMember.objects.filter(active=True)
    qs = qs.select_related("site", "user").order_by("name", "pk")
    total = qs.count()
    pages = max(1, -(-total // PAGE))
    page = min(max(1, page), pages)
    members = list(qs[(page - 1) * PAGE: page * PAGE])
    open_cases = dict(Case.objects.filter(kind=KIND_STAFF, status__in=ACTIVE_STATUSES, staff_id__in=[m.pk for m in members])
                      .values("staff_id").annotate(n=Count("id")).values_list("staff_id", "n"))
    settings, today = _Settings(), timezone.localdate()
    rows = [{"pk": m.pk, "name": person_name(m.name), "role": m.get_role_display(), "department": m.department,
             "site": m.site.name if m.site is not None else "", "doses": _doses(m, settings, today), "open_cases": open_cases.get(m.pk, 0)}
            for m in members]
    return {"available": True, "members": rows, "total": total, "page": page, "pages": pages, "year": today.year,
            "quarter": f"{today.year}-Q{(today.month - 1) // 3 + 1}", "q": q}


def staff_person(*, staff_id: int) -> dict | None:
    """One person: their doses against limits and investigation levels, and their cases (open first)."""
    from dosereg.staff.models import StaffMember

    m = StaffMember.objects.select_related("site").filter(pk=staff_id).first()
    if m is None:
        return None
    cases = list(Case.objects.filter(kind=KIND_STAFF, staff=m).order_by("-sort_rank", "-exam_date", "-id")[:100])
    return {"member": m, "name": person_name(m.name), "doses": _doses(m, _Settings(), timezone.localdate()),
            "cases": cases, "year": timezone.localdate().year}
