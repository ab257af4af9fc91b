"""The RSO's worklist pages. Thin: access, a selector or a service, audit, render."""
from __future__ import annotations

import csv

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from dosereg.audit.models import AuditEvent
from dosereg.audit.services import audit_record
from dosereg.access import roles
from dosereg.access.scope import scope_for
from dosereg.cases import selectors, services

from .access import role_required
from .params import QueryParams, clean_text

V, X, C = AuditEvent.ACTION_VIEW, AuditEvent.ACTION_EXPORT, AuditEvent.ACTION_CHANGE
ACTIONS = ("acknowledge", "follow_up", "close")


def filters_from_query(query) -> selectors.Filters:
    """The worklist's filters from a request's query string (invalid values are ignored and listed)."""
    p = QueryParams(query, strict=False)
    f = selectors.Filters(
        kind=p.choice("kind", [k for k, _ in selectors.KIND_CHOICES]) or "",
        severity=p.choice("severity", selectors.SEVERITIES) or "",
        status=p.choice("status", ["active", "all"] + [s for s, _ in selectors.STATUS_CHOICES]) or "active",
        site=p.text("site", max_length=256), device=p.int("device"), modality=p.text("modality", max_length=8).upper(),
        rule=p.text("rule", max_length=64), date_from=p.date("from"), date_to=p.date("to"), q=p.text("q"),
        page=p.int("page", max_value=100000) or 1,
    )
    f.errors = p.messages() if hasattr(p, "messages") else []
    return f


@require_GET
@role_required(*roles.DASHBOARD)
def worklist(request):
    f = filters_from_query(request.GET)
    ctx = selectors.worklist(scope=selectors.case_scope(request.user), filters=f)
    audit_record(request=request, action=V, object_type="worklist", patient_pks=selectors.patient_pks(ctx["rows"]))
    ctx["can_act"] = roles.has_role(request.user, roles.ALERT_ACTIONS)
    ctx["scope"] = scope_for(request.user)  # the sites, for the page head
    return render(request, "cases/worklist.html", ctx)


@require_GET
@role_required(*roles.DASHBOARD)
def export_csv(request):
    f = filters_from_query(request.GET)
    header, rows = selectors.csv_rows(scope=selectors.case_scope(request.user), filters=f)
    audit_record(request=request, action=X, object_type="worklist_csv", patient_pks=selectors.export_patient_pks(
        scope=selectors.case_scope(request.user), filters=f), detail={"query": request.GET.urlencode()[:500]})

    class Echo:
        def write(self, value):
            return value

    w = csv.writer(Echo())

    def stream():
        yield w.writerow(header)
        for r in rows:
            yield w.writerow(r)

    resp = StreamingHttpResponse(stream(), content_type="text/csv; charset=utf-8")
    resp["Content-Disposition"] = 'attachment; filename="dosereg-worklist.csv"'
    return resp


@require_POST
@role_required(*roles.ALERT_ACTIONS)
def bulk_acknowledge(request):
    p = QueryParams(request.POST, strict=False)
    ids = p.ints("ids")
    note = clean_text(request.POST.get("note"), max_length=2000)
    allowed = list(selectors.scoped(selectors.case_scope(request.user)).filter(pk__in=ids).values_list("pk", "patient_id"))
    done = services.cases_bulk_acknowledge(case_ids=[pk for pk, _ in allowed], user=request.user, note=note) if allowed else []
    audit_record(request=request, action=C, object_type="case", object_id="bulk_acknowledge",
                 patient_pks=[pid for pk, pid in allowed if pk in set(done)], detail={"action": "acknowledge", "cases": done, "note": note})
    if request.headers.get("X-Requested-With"):
        return JsonResponse({"ok": True, "acknowledged": done})
    if done:
        messages.success(request, f"{len(done)} case(s) acknowledged")
    else:
        messages.warning(request, "No open case was selected: nothing acknowledged")
    nxt = request.POST.get("next", "")
    return redirect(nxt if nxt.startswith(reverse("cases:worklist")) else reverse("cases:worklist"))


@require_GET
@role_required(*roles.DASHBOARD)
def due(request):
    ctx = selectors.due_page(scope=selectors.case_scope(request.user),
                             page=QueryParams(request.GET, strict=False).int("page", max_value=100000) or 1)
    audit_record(request=request, action=V, object_type="worklist_due", patient_pks=selectors.patient_pks(ctx["rows"]))
    return render(request, "cases/due.html", ctx)


@require_GET
@role_required(*roles.DASHBOARD)
def detail(request, case_id: int):
    ctx = selectors.case_detail(case_id=case_id, scope=selectors.case_scope(request.user))
    if ctx is None:
        raise Http404
    case = ctx["case"]
    audit_record(request=request, action=V, object_type="case", object_id=case.pk, patient_pks=[case.patient_id])
    ctx["can_act"] = roles.has_role(request.user, roles.ALERT_ACTIONS)
    ctx["follow_up_default"] = services.follow_up_default(case)
    ctx["skin_outcomes"], ctx["skin_grades"] = services.SKIN_OUTCOMES, services.SKIN_GRADES
    ctx["conceptus_methods"] = services.CONCEPTUS_METHODS
    ctx["skin_grade_source"] = services.SKIN_GRADE_SOURCE
    ctx["can_note_incident"] = roles.has_role(request.user, INCIDENT_ACTIONS["note"])
    ctx["can_sign_off"] = roles.has_role(request.user, INCIDENT_ACTIONS["sign_off"])
    return render(request, "cases/case.html", ctx)


@require_POST
@role_required(*roles.ALERT_ACTIONS)
def action(request, case_id: int, action: str):
    if action not in ACTIONS:
        raise Http404
    case = selectors.case_get(case_id=case_id, scope=selectors.case_scope(request.user))
    if case is None:
        raise Http404
    note = clean_text(request.POST.get("note"), max_length=2000)
    try:
        if action == "acknowledge":
            services.case_acknowledge(case_id=case.pk, user=request.user, note=note)
        elif action == "follow_up":
            services.case_follow_up(case_id=case.pk, user=request.user, due=services.parse_due(request.POST.get("due", "")), note=note)
        else:
            data = {k: clean_text(request.POST.get(k), max_length=2000) for k in (
                "skin_reaction", "skin_grade", "psd_gy", "conceptus_dose_mgy", "conceptus_method", "dose_check_review", "staff_finding")}
            services.case_close(case_id=case.pk, user=request.user, data=data, note=note)
    except services.CaseError as exc:
        if request.headers.get("X-Requested-With"):
            return JsonResponse({"ok": False, "error": str(exc)}, status=409)
        messages.error(request, f"Not recorded: {exc}")
        return redirect(reverse("cases:detail", kwargs={"case_id": case.pk}) + f"#{action.replace('_', '-')}")
    audit_record(request=request, action=C, object_type="case", object_id=case.pk, patient_pks=[case.patient_id],
                 detail={"action": action, "note": note})
    if request.headers.get("X-Requested-With"):
        return JsonResponse({"ok": True, "case": case.pk, "action": action})
    messages.success(request, {"acknowledge": "Case acknowledged", "follow_up": "Follow-up scheduled",
                               "close": "Case closed"}[action])
    return redirect(reverse("cases:detail", kwargs={"case_id": case.pk}))


# ---------------------------------------------------------------------------
# incident register
# ---------------------------------------------------------------------------
INCIDENT_ACTIONS = {  # action -> roles allowed
    "declare": roles.ALERT_ACTIONS, "report": roles.ALERT_ACTIONS,
    "note": (roles.RSO, roles.PHYSICIST, roles.ADMIN), "sign_off": (roles.PHYSICIST, roles.ADMIN),
}


@require_POST
@role_required(*roles.DASHBOARD)
def incident_action(request, case_id: int, action: str):
    from dosereg.cases import incidents

    if action not in INCIDENT_ACTIONS:
        raise Http404
    if not roles.has_role(request.user, INCIDENT_ACTIONS[action]):
        raise PermissionDenied
    case = selectors.case_get(case_id=case_id, scope=selectors.case_scope(request.user))
    if case is None:
        raise Http404
    note = clean_text(request.POST.get("note"), max_length=4000)
    try:
        if action == "declare":
            incidents.incident_declare(case_id=case.pk, user=request.user, rule_key=clean_text(request.POST.get("rule"), max_length=64),
                                       category=clean_text(request.POST.get("category"), max_length=32), summary=note)
        elif action == "note":
            incidents.incident_note(case_id=case.pk, user=request.user, note=note)
        elif action == "sign_off":
            incidents.incident_sign_off(case_id=case.pk, user=request.user, note=note)
        else:
            incidents.incident_report(case_id=case.pk, user=request.user, reference=clean_text(request.POST.get("reference"), max_length=128),
                                      reported_at=services.parse_due(request.POST.get("reported_at", "")))
    except services.CaseError as exc:
        if request.headers.get("X-Requested-With"):
            return JsonResponse({"ok": False, "error": str(exc)}, status=409)
        messages.error(request, f"Not recorded: {exc}")
        return redirect(reverse("cases:detail", kwargs={"case_id": case.pk}) + "#incident")
    audit_record(request=request, action=C, object_type="incident", object_id=case.pk, patient_pks=[case.patient_id],
                 detail={"action": action})
    if request.headers.get("X-Requested-With"):
        return JsonResponse({"ok": True, "case": case.pk, "action": action})
    messages.success(request, {"declare": "Incident declared", "note": "Note added", "sign_off": "Signed off",
                               "report": "Regulator's reference recorded"}[action])
    return redirect(reverse("cases:detail", kwargs={"case_id": case.pk}) + "#incident")


def _year(request) -> int | None:
    return QueryParams(request.GET, strict=False).int("year", min_value=1900, max_value=9998)


@require_GET
@role_required(*roles.DASHBOARD)
def incident_register(request):
    year = _year(request)
    rows = selectors.incidents(scope=selectors.case_scope(request.user), year=year)
    audit_record(request=request, action=V, object_type="incident_register", patient_pks=[i.case.patient_id for i in rows])
    return render(request, "cases/incidents.html", {"rows": rows, "year": year, "years": selectors.incident_years(scope=selectors.case_scope(request.user))})


def _incident_csv_response(rows, filename: str) -> HttpResponse:
    header, data = selectors.incident_csv(rows)
    resp = HttpResponse(content_type="text/csv; charset=utf-8")
    resp["Content-Disposition"] = f'attachment; filename="{filename}"'
    w = csv.writer(resp)
    w.writerow(header)
    w.writerows(data)
    return resp


def _pdf_response(body: bytes, filename: str) -> HttpResponse:
    resp = HttpResponse(body, content_type="application/pdf")
    resp["Content-Disposition"] = f'attachment; filename="{filename}"'
    return resp


@require_GET
@role_required(*roles.DASHBOARD)
def incident_export(request):
    """The register (one year with ?year=, else every year) as CSV."""
    year = _year(request)
    rows = selectors.incidents(scope=selectors.case_scope(request.user), year=year, limit=100000)
    audit_record(request=request, action=X, object_type="incident_csv", patient_pks=[i.case.patient_id for i in rows],
                 detail={"year": year, "incidents": len(rows)})
    return _incident_csv_response(rows, f"dosereg-incidents-{year}.csv" if year else "dosereg-incidents.csv")


@require_GET
@role_required(*roles.DASHBOARD)
def incident_register_pdf(request):
    """The register (one year with ?year=, else every year) as PDF: the table, then each incident in full."""
    from . import incident_pdf

    year = _year(request)
    rows = selectors.incidents(scope=selectors.case_scope(request.user), year=year, limit=10000)
    scope = scope_for(request.user)
    body = incident_pdf.register_pdf(incidents=rows, year=year, scope_label="" if scope.unrestricted else scope.label)
    audit_record(request=request, action=X, object_type="incident_pdf", patient_pks=[i.case.patient_id for i in rows],
                 detail={"year": year, "incidents": len(rows)})
    return _pdf_response(body, f"dosereg-incidents-{year}.pdf" if year else "dosereg-incidents.pdf")


@require_GET
@role_required(*roles.DASHBOARD)
def incident_file(request, case_id: int, fmt: str):
    """One incident (the case's) as CSV or PDF; another site's case, or a case that is no incident: 404."""
    from . import incident_pdf

    if fmt not in ("csv", "pdf"):
        raise Http404
    inc = selectors.incident_get(case_id=case_id, scope=selectors.case_scope(request.user))
    if inc is None:
        raise Http404
    audit_record(request=request, action=X, object_type=f"incident_{fmt}", object_id=inc.case_id,
                 patient_pks=[inc.case.patient_id], detail={"incident": inc.number})
    name = f"dosereg-incident-{inc.number}.{fmt}"
    if fmt == "csv":
        return _incident_csv_response([inc], name)
    return _pdf_response(incident_pdf.incident_pdf(incident=inc), name)


# ---------------------------------------------------------------------------
# staff in the RSO's view
# ---------------------------------------------------------------------------
@require_GET
@role_required(*roles.STAFF_OVERVIEW)
def staff_person(request, staff_id: int):
    from dosereg.cases import staff

    ctx = staff.staff_person(staff_id=staff_id)
    if ctx is None:
        raise Http404
    audit_record(request=request, action=V, object_type="staff_member", object_id=staff_id)
    return render(request, "cases/staff_person.html", ctx)
