"""The RSO's worklist pages. Thin: access, a selector or a service, audit, render."""
from __future__ import annotations

import csv

from django.contrib import messages
from django.http import Http404, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from dosereg.audit.models import AuditEvent
from dosereg.audit.services import audit_record
from dosereg.web import roles
from dosereg.web.access import role_required
from dosereg.web.params import QueryParams, clean_text
from dosereg.web.scope import scope_for

from . import selectors, services

V, X, C = AuditEvent.ACTION_VIEW, AuditEvent.ACTION_EXPORT, AuditEvent.ACTION_CHANGE
ACTIONS = ("acknowledge", "follow_up", "close")


@require_GET
@role_required(*roles.DASHBOARD)
def worklist(request):
    f = selectors.Filters.from_query(request.GET)
    ctx = selectors.worklist(scope=scope_for(request.user), filters=f)
    audit_record(request=request, action=V, object_type="worklist", patient_pks=selectors.patient_pks(ctx["rows"]))
    ctx["can_act"] = roles.has_role(request.user, roles.ALERT_ACTIONS)
    ctx["scope"] = scope_for(request.user)
    return render(request, "cases/worklist.html", ctx)


@require_GET
@role_required(*roles.DASHBOARD)
def export_csv(request):
    f = selectors.Filters.from_query(request.GET)
    header, rows = selectors.csv_rows(scope=scope_for(request.user), filters=f)
    audit_record(request=request, action=X, object_type="worklist_csv", patient_pks=selectors.export_patient_pks(
        scope=scope_for(request.user), filters=f), detail={"query": request.GET.urlencode()[:500]})

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
    allowed = list(selectors.scoped(scope_for(request.user)).filter(pk__in=ids).values_list("pk", "patient_id"))
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
    rows = selectors.due_list(scope=scope_for(request.user))
    audit_record(request=request, action=V, object_type="worklist_due", patient_pks=selectors.patient_pks(rows))
    return render(request, "cases/due.html", {"rows": rows})


@require_GET
@role_required(*roles.DASHBOARD)
def detail(request, case_id: int):
    ctx = selectors.case_detail(case_id=case_id, scope=scope_for(request.user))
    if ctx is None:
        raise Http404
    case = ctx["case"]
    audit_record(request=request, action=V, object_type="case", object_id=case.pk, patient_pks=[case.patient_id])
    ctx["can_act"] = roles.has_role(request.user, roles.ALERT_ACTIONS)
    ctx["follow_up_default"] = services.follow_up_default(case)
    ctx["skin_outcomes"], ctx["skin_grades"] = services.SKIN_OUTCOMES, services.SKIN_GRADES
    ctx["conceptus_methods"] = services.CONCEPTUS_METHODS
    ctx["skin_grade_source"] = services.SKIN_GRADE_SOURCE
    return render(request, "cases/case.html", ctx)


@require_POST
@role_required(*roles.ALERT_ACTIONS)
def action(request, case_id: int, action: str):
    if action not in ACTIONS:
        raise Http404
    case = selectors.case_get(case_id=case_id, scope=scope_for(request.user))
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
