"""Pages. Views stay thin: check access, call a selector or service, audit, render.

Query parameters are read through ``params.QueryParams`` (see the rule there): on an HTML page a
malformed filter is ignored and named in a notice (``param_errors``); the JSON endpoint and the file
exports, which have no page to show a notice on, answer 400 instead.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from dosereg import formatting as fmt
from dosereg.access import roles
from dosereg.access.scope import scope_for
from dosereg.audit.models import AuditEvent
from dosereg.audit.selectors import audit_event_search, login_failures
from dosereg.audit.services import audit_record, client_ip
from dosereg.protocols.models import DRLSet, DRLValue
from dosereg.registry.merge_group import patient_group_ids
from dosereg.registry.models import Patient
from dosereg.skindose import selectors as skin_selectors

from . import exports, integrations, params, patient_browse, pdf, selectors, services
from .access import portal_patient, role_required, safe_next
from .forms import AuditRangeForm, DRLSetForm, DRLValueForm, InvitationAcceptForm, LoginForm

log = logging.getLogger(__name__)
V = AuditEvent.ACTION_VIEW
X = AuditEvent.ACTION_EXPORT


# ---------------------------------------------------------------------------
# login / home
# ---------------------------------------------------------------------------
def login_locked(request, username: str) -> bool:
    """Locked: this user name failed LOGIN_MAX_FAILURES times from this address within LOGIN_LOCKOUT_S.
    Failures for other user names, or from other addresses, never lock a user out (so a correct password
    still signs in); many failures from one address across user names are logged, not locked."""
    since = timezone.now() - timedelta(seconds=settings.DOSEREG_LOGIN_LOCKOUT_S)
    ip = client_ip(request)
    by_pair, by_ip = login_failures(username=username, ip=ip, since=since)
    if by_ip >= settings.DOSEREG_LOGIN_MAX_FAILURES_PER_IP:
        log.warning("login: %s failed logins from %s within %s s (password spraying?)", by_ip, ip,
                    settings.DOSEREG_LOGIN_LOCKOUT_S)
    return by_pair >= settings.DOSEREG_LOGIN_MAX_FAILURES


class LoginView(auth_views.LoginView):
    template_name = "web/login.html"
    authentication_form = LoginForm
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        # the form refuses a NUL in the user name itself; the lockout count must not query with one
        username = params.clean_text(request.POST.get("username"), max_length=150)
        if login_locked(request, username):
            form = self.get_form()
            form.errors.clear()
            return self.render_to_response(self.get_context_data(
                form=form, locked=True,
            ), status=429)
        return super().post(request, *args, **kwargs)


def home(request):
    if not request.user.is_authenticated:
        return redirect("web:login")
    return redirect(roles.home_url_name(request.user))


def no_role(request):
    if not request.user.is_authenticated:
        return redirect("web:login")
    return render(request, "web/no_role.html", status=403)


# ---------------------------------------------------------------------------
# RSO dashboard
# ---------------------------------------------------------------------------
@require_GET
@role_required(*roles.DASHBOARD)
def dashboard(request):
    ctx = selectors.dashboard(user=request.user, scope=scope_for(request.user))
    from dosereg.cases import selectors as case_selectors  # the top of the RSO's worklist, and its counts

    ctx["cases"] = case_selectors.dashboard(scope=case_selectors.case_scope(request.user))
    shown = {p["patient_id"] for p in ctx["top_patients"] if p.get("patient_id")}
    shown |= case_selectors.patient_pks(ctx["cases"]["rows"])
    shown |= {s.patient_id for s in ctx["pregnancy"]}
    shown |= {s.patient_id for s in ctx["flagged"]["rows"] if s.patient_id}
    audit_record(request=request, action=V, object_type="dashboard", patient_pks=shown)
    ctx["can_act"] = roles.has_role(request.user, roles.ALERT_ACTIONS)
    ctx["can_reprocess"] = roles.has_role(request.user, roles.REPROCESS)
    ctx["trends_json"] = ctx["trends"]
    return render(request, "web/dashboard.html", ctx)


@require_POST
@role_required(*roles.ALERT_ACTIONS)
def alert_action(request, alert_id: int, action: str):
    if action not in integrations.ALERT_ACTIONS:
        raise Http404
    try:
        result = integrations.alert_transition(alert_id=alert_id, action=action, user=request.user,
                                               note=request.POST.get("note", "")[:2000],
                                               due=request.POST.get("due", ""), scope=scope_for(request.user))
    except integrations.AlertNotFound:
        raise Http404
    except (ValueError, ValidationError) as exc:
        return JsonResponse({"ok": False, "error": str(exc)}, status=409)
    audit_record(request=request, action=AuditEvent.ACTION_CHANGE, object_type="alert", object_id=alert_id,
                 patient_pks=[result.get("patient_pk")], detail={"action": action})
    if request.headers.get("Accept", "").startswith("application/json") or request.headers.get("X-Requested-With"):
        return JsonResponse({"ok": True, "alert": result})
    messages.success(request, f"Alert {alert_id}: {action.replace('_', ' ')} recorded")
    return redirect(safe_next(request, reverse("web:dashboard")))


@require_POST
@role_required(*roles.REPROCESS)
def quarantine_reprocess(request):
    # no ids: everything in quarantine ("Reprocess selected (or all)"); ids of which none is valid: nothing
    p = params.QueryParams(request.POST, strict=False)
    ids = p.ints("ids")
    if p.errors and not ids:
        msg = "no valid object id selected; nothing sent for re-processing"
        if request.headers.get("X-Requested-With"):
            return JsonResponse({"ok": False, "error": msg}, status=400)
        messages.error(request, msg)
        return redirect(reverse("web:dashboard") + "#quarantine")
    n = services.quarantine_reprocess(ids=ids or None, scope=scope_for(request.user))
    audit_record(request=request, action=AuditEvent.ACTION_CHANGE, object_type="quarantine", object_id="reprocess",
                 detail={"ids": ids, "count": n})
    if request.headers.get("X-Requested-With"):
        return JsonResponse({"ok": True, "count": n})
    messages.success(request, f"{n} object(s) sent for re-processing")
    return redirect(reverse("web:dashboard") + "#quarantine")


# ---------------------------------------------------------------------------
# patient exposure history (clinical roles)
# ---------------------------------------------------------------------------
@require_GET
@role_required(*roles.CLINICAL)
def patient_list(request):
    f = patient_browse.read_filters(request.GET)
    scope = scope_for(request.user)
    page = patient_browse.patient_page(f, scope=scope)
    audit_record(request=request, action=V, object_type="patient_list", object_id=f.q[:64],
                 patient_pks=[r["pk"] for r in page.rows],
                 detail={"q": f.q, "sort": f.sort, "page": page.page, "count": page.count})
    return render(request, "web/patient_list.html", {
        "f": f, "q": f.q, "page": page, "rows": page.rows, "scope": scope,
        "columns": patient_browse.sort_columns(f), "page_sizes": patient_browse.PAGE_SIZES,
        "base_query": params.query_without(request, "sort", "page"), "page_query": params.query_without(request, "page"),
        "param_errors": [f"parameter {n!r} ignored: {m}" for n, m in f.errors.items()],
    })


def _clinical_patient(request, pk: int) -> Patient:
    """The patient, if the user may read them: for a site-scoped RSO a patient with no study at their sites
    is a 404, like a missing one (no query of its own: the scope is a subquery)."""
    return get_object_or_404(Patient.objects.filter(scope_for(request.user).patient_q()), pk=pk)


@require_GET
@role_required(*roles.CLINICAL)
def patient_history(request, pk: int):
    patient = _clinical_patient(request, pk)
    if patient.merged_into_id:
        return redirect("web:patient_history", pk=patient.merged_into_id)
    ctx = selectors.patient_history(patient=patient, scope=scope_for(request.user))
    audit_record(request=request, action=V, object_type="patient", object_id=patient.pk, patient_pks=[patient.pk])
    ctx["can_invite"] = roles.has_role(request.user, roles.INVITE_PATIENTS)
    ctx["invite_link"] = request.session.pop(f"invite-{patient.pk}", None)
    return render(request, "web/patient_history.html", ctx)


@require_GET
@role_required(*roles.CLINICAL)
def patient_history_export(request, pk: int):
    patient = _clinical_patient(request, pk)
    studies = selectors.patient_studies(patient_ids=patient_group_ids(patient.pk), scope=scope_for(request.user))
    audit_record(request=request, action=X, object_type="patient", object_id=patient.pk, patient_pks=[patient.pk],
                 detail={"format": "csv", "rows": len(studies)})
    return exports.csv_response(f"patient-{patient.pk}-exposure-history.csv", exports.HISTORY_HEADER,
                                exports.history_rows(studies))


@require_POST
@role_required(*roles.INVITE_PATIENTS)
def patient_invite(request, pk: int):
    patient = _clinical_patient(request, pk)
    try:
        acc, token = services.patient_invitation_issue(patient=patient, issued_by=request.user)
    except services.InvitationError as exc:
        messages.error(request, str(exc))
        return redirect("web:patient_history", pk=pk)
    link = request.build_absolute_uri(reverse("web:portal_invite", kwargs={"token": token}))
    request.session[f"invite-{patient.pk}"] = link  # shown once on the next page, never stored in clear
    audit_record(request=request, action=AuditEvent.ACTION_CHANGE, object_type="patient_account", object_id=acc.pk,
                 patient_pks=[patient.pk], detail={"action": "invite"})
    return redirect("web:patient_history", pk=pk)


@require_GET
@role_required(*roles.CLINICAL)
def study_detail(request, pk: int):
    ctx = selectors.study_detail(study_pk=pk, scope=scope_for(request.user))
    if ctx is None:
        raise Http404
    s = ctx["study"]
    audit_record(request=request, action=V, object_type="study", object_id=s.pk, patient_pks=[s.patient_id])
    ctx["fhir_id"] = f"dose-summary-{s.pk}"
    ctx["is_ct"] = s.procedure_modality == "CT" or any(e.event_type.startswith("ct_") for e in ctx["events"][:1])
    ctx["event_types"] = sorted({(e.event_type, fmt.event_type(e.event_type)) for e in ctx["events"]}, key=lambda t: t[1])
    ctx["event_planes"] = sorted({e.plane for e in ctx["events"]})
    ctx["skin"] = skin_selectors.study_skin_dose(s.pk)
    if ctx["skin"] is not None and roles.has_role(request.user, roles.DASHBOARD):
        ctx["skin_case"] = integrations.procedure_case(study_uid=s.study_instance_uid)
    ctx["chart"] = [
        {"t": e.datetime.isoformat() if e.datetime else None, "kap": e.dap_gy_cm2, "kar": e.dose_rp_gy,
         "dlp": e.dlp_mgy_cm, "ctdi": e.ctdivol_mgy, "type": e.event_type, "plane": e.plane,
         "type_label": fmt.event_type(e.event_type, missing="event")}
        for e in ctx["events"]
    ]
    return render(request, "web/study_detail.html", ctx)


# ---------------------------------------------------------------------------
# patient portal
# ---------------------------------------------------------------------------
def _portal_context(request):
    patient = portal_patient(request)
    exams = selectors.portal_exams(patient=patient)
    return patient, exams


@require_GET
@role_required(roles.PATIENT)
def portal(request):
    patient, exams = _portal_context(request)
    audit_record(request=request, action=V, object_type="portal", object_id=patient.pk, patient_pks=[patient.pk])
    return render(request, "web/portal.html", {
        "patient": patient, "exams": exams, "background_source": settings.DOSEREG_BACKGROUND_SOURCE,
        "background_msv": settings.DOSEREG_BACKGROUND_MSV_PER_YEAR,
    })


@require_GET
@role_required(roles.PATIENT)
def portal_exam(request, pk: int):
    patient, exams = _portal_context(request)
    exam = next((e for e in exams if e.study.pk == pk), None)
    if exam is None:  # another patient's study, or none: the same answer
        raise Http404
    audit_record(request=request, action=V, object_type="portal_exam", object_id=pk, patient_pks=[patient.pk])
    return render(request, "web/portal_exam.html", {"patient": patient, "exam": exam,
                                                    "background_source": settings.DOSEREG_BACKGROUND_SOURCE,
                                                    "background_msv": settings.DOSEREG_BACKGROUND_MSV_PER_YEAR})


@require_GET
@role_required(roles.PATIENT)
def portal_export(request):
    patient, exams = _portal_context(request)
    audit_record(request=request, action=X, object_type="portal", object_id=patient.pk, patient_pks=[patient.pk],
                 detail={"format": "csv", "rows": len(exams)})
    return exports.csv_response("my-imaging-exams.csv", exports.PORTAL_HEADER, exports.portal_rows(exams))


@require_GET
@role_required(roles.PATIENT)
def portal_pdf(request):
    """The printable page's content as a PDF file (the patient's own exams only)."""
    patient, exams = _portal_context(request)
    body = pdf.portal_pdf(patient=patient, exams=exams)
    audit_record(request=request, action=X, object_type="portal", object_id=patient.pk, patient_pks=[patient.pk],
                 detail={"format": "pdf", "rows": len(exams)})
    resp = HttpResponse(body, content_type="application/pdf")
    resp["Content-Disposition"] = 'attachment; filename="my-imaging-exams.pdf"'
    resp["Cache-Control"] = "no-store"
    return resp


@require_GET
@role_required(roles.PATIENT)
def portal_print(request):
    patient, exams = _portal_context(request)
    audit_record(request=request, action=X, object_type="portal", object_id=patient.pk, patient_pks=[patient.pk],
                 detail={"format": "print"})
    return render(request, "web/portal_print.html", {"patient": patient, "exams": exams, "now": timezone.now(),
                                                     "background_source": settings.DOSEREG_BACKGROUND_SOURCE})


@require_http_methods(["GET", "POST"])
def portal_invite(request, token: str):
    """Open to anonymous users: the token is the credential, the birth date the verification."""
    acc = services.patient_invitation_get(token=token)
    if acc is None:
        return render(request, "web/portal_invite.html", {"invalid": True}, status=404)
    form = InvitationAcceptForm(request.POST or None)
    error = None
    if request.method == "POST" and form.is_valid():
        try:
            user = services.patient_invitation_accept(
                token=token, birth_date=form.cleaned_data["birth_date"], username=form.cleaned_data["username"],
                password=form.cleaned_data["password"])
        except services.InvitationError as exc:
            error = str(exc)
        else:
            audit_record(request=request, action=AuditEvent.ACTION_CHANGE, object_type="patient_account",
                         object_id=acc.pk, patient_pks=[acc.patient_id], user=user, detail={"action": "verified"})
            messages.success(request, "Your account is ready. Please sign in.")
            return redirect("web:login")
    return render(request, "web/portal_invite.html", {"form": form, "error": error})


# ---------------------------------------------------------------------------
# physicist protocol audit
# ---------------------------------------------------------------------------


def _range(request, *, strict: bool = False) -> tuple[datetime, datetime, str, int | None, AuditRangeForm, params.QueryParams]:
    """since (inclusive day), until (inclusive day), modality, device of the protocol pages and exports.

    Each valid filter applies on its own; an invalid one is ignored (page, ``p.errors``) or a 400
    (``strict``: the JSON endpoint and the exports raise ``params.InvalidParameter``)."""
    from .views_audit import audit_range  # the audit page's own range (whole local days), so files match it

    return audit_range(request, strict=strict)


def _bad_param(exc: params.InvalidParameter) -> JsonResponse:
    return JsonResponse({"ok": False, "errors": exc.as_dict()}, status=400)


def _audit_in_scope(audit: dict, scope) -> dict:
    """The protocol audit's rows of the devices at the user's sites (a site-scoped RSO; one query)."""
    allowed = scope.device_ids()
    if allowed is not None:
        audit["rows"] = [r for r in audit["rows"] if r["device_id"] in allowed]
    return audit


@require_GET
@role_required(*roles.PROTOCOL_READ)
def protocol_distribution(request):
    quantity = request.GET.get("quantity", "")
    if quantity not in {k for k, _, _ in selectors.AUDIT_QUANTITIES}:
        return HttpResponseBadRequest("unknown quantity")
    try:
        since, until, _, _, _, p = _range(request, strict=True)
        device_id, std_id = p.int("device_id"), p.int("std")
    except params.InvalidParameter as exc:
        return _bad_param(exc)
    allowed = scope_for(request.user).device_ids()
    if allowed is not None and device_id not in allowed:  # another site's device, or "any device": nothing
        values = []
    else:
        values = selectors.distribution(since=since, until=until, quantity=quantity, device_id=device_id,
                                        standard_name_id=std_id)
    return JsonResponse({"quantity": quantity, "values": values})


@require_http_methods(["GET", "POST"])
@role_required(*roles.PROTOCOL_READ)
def drl_sets(request):
    set_form, value_form = DRLSetForm(prefix="set"), DRLValueForm(prefix="val")
    if request.method == "POST":
        if not roles.has_role(request.user, roles.PROTOCOL_EDIT):
            raise PermissionDenied
        try:
            if "set-name" in request.POST:
                set_form = DRLSetForm(request.POST, prefix="set")
                if set_form.is_valid():
                    services.drl_set_create(**set_form.cleaned_data)
                    return redirect("web:drl_sets")
            else:
                value_form = DRLValueForm(request.POST, prefix="val")
                if value_form.is_valid():
                    services.drl_value_set(**value_form.cleaned_data)
                    return redirect("web:drl_sets")
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
    values = DRLValue.objects.select_related("drl_set", "standard_name").order_by("drl_set__name", "standard_name__modality",
                                                                                  "standard_name__name", "quantity")
    return render(request, "web/drl_sets.html", {
        "sets": DRLSet.objects.all(), "values": values, "set_form": set_form, "value_form": value_form,
        "can_edit": roles.has_role(request.user, roles.PROTOCOL_EDIT),
    })


@require_GET
@role_required(*roles.PROTOCOL_READ)
def protocol_export(request, kind: str, fmt: str):
    if fmt not in ("csv", "xlsx") or kind not in ("studies", "summary", "events"):
        raise Http404
    try:  # a file must cover exactly the range asked for: an invalid filter is a 400, not ignored
        since, until, modality, device, _, _ = _range(request, strict=True)
    except params.InvalidParameter as exc:
        return _bad_param(exc)
    scope = scope_for(request.user)
    shown: list[int] = []  # the patients whose studies or events the file holds (audited); the summary has none
    if kind == "studies":
        header = exports.STUDY_HEADER
        rows = exports.protocol_study_rows(since=since, until=until, modality=modality, device_id=device, scope=scope)
        shown = exports.protocol_study_patient_ids(since=since, until=until, modality=modality, device_id=device, scope=scope)
    elif kind == "events":
        header = exports.EVENT_HEADER
        rows = exports.technique_event_rows(since=since, until=until, device_id=device, scope=scope)
        shown = exports.technique_event_patient_ids(since=since, until=until, device_id=device, scope=scope)
    else:
        audit = _audit_in_scope(selectors.protocol_audit(since=since, until=until, modality=modality, device_id=device), scope)
        header, rows = exports.SUMMARY_HEADER, exports.protocol_summary_rows(audit)
    audit_record(request=request, action=X, object_type="protocol_export", object_id=kind, patient_pks=shown,
                 detail={"format": fmt, "since": since.isoformat(), "until": until.isoformat(), "modality": modality,
                         "device": device})
    name = f"dosereg-{kind}-{since:%Y%m%d}-{until:%Y%m%d}.{fmt}"
    if fmt == "csv":
        return exports.csv_response(name, header, rows)
    return exports.xlsx_response(name, header, rows, sheet=kind)


# ---------------------------------------------------------------------------
# staff
# ---------------------------------------------------------------------------
@require_GET
@role_required(roles.STAFF)
def staff_me(request):
    ctx = integrations.staff_own_dose(user=request.user)
    audit_record(request=request, action=V, object_type="staff_dose", object_id=request.user.pk)
    return render(request, "web/staff_me.html", ctx)


@require_GET
@role_required(*roles.STAFF_OVERVIEW)
def staff_overview(request):
    from dosereg.cases.staff import staff_overview as rso_staff_overview  # doses against limits, names as names, links

    p = params.QueryParams(request.GET, strict=False)
    ctx = rso_staff_overview(page=p.int("page", max_value=100000) or 1, q=p.text("q")) if integrations.has_staff() else {"available": False}
    audit_record(request=request, action=V, object_type="staff_overview")
    return render(request, "web/staff_overview.html", ctx)


# ---------------------------------------------------------------------------
# audit trail (admins)
# ---------------------------------------------------------------------------
@require_GET
@role_required(*roles.AUDIT_LOG)
def audit_log(request):
    p = params.QueryParams(request.GET, strict=False)
    qs = audit_event_search(q=p.text("q"), username=p.text("user", max_length=150),
                            action=p.choice("action", {a for a, _ in AuditEvent.ACTION_CHOICES}) or "",
                            object_type=p.text("object_type", max_length=32), object_id=p.text("object_id", max_length=64),
                            patient_pk=p.int("patient"), ip=p.ip("ip") or "", since=p.datetime("since"),
                            until=p.datetime("until"))
    before = p.int("before")
    if before is not None:
        qs = qs.filter(pk__lt=before)
    page = list(qs[:101])
    more = len(page) > 100
    page = page[:100]
    nxt = request.GET.copy()
    if more:
        nxt["before"] = page[-1].pk
    # the form shows what was typed (without NULs), so an ignored filter can be corrected
    g = {name: p.text(name, max_length=200) for name in
         ("q", "user", "action", "object_type", "object_id", "patient", "ip", "since", "until")}
    return render(request, "web/audit_log.html", {"events": page, "more": more, "next_query": nxt.urlencode(),
                                                  "actions": AuditEvent.ACTION_CHOICES, "g": g,
                                                  "param_errors": p.messages()})
