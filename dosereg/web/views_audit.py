"""Protocol audit pages (issue 17 item 2): the audit with its overview charts and drill-downs, one group's
histograms and outliers, and the name mapping with its confirm step (never a single click) and audit trail."""
from __future__ import annotations

from datetime import datetime, time, timedelta

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from dosereg.access import roles
from dosereg.access.scope import scope_for
from dosereg.audit.models import AuditEvent
from dosereg.audit.services import audit_record
from dosereg.protocols.models import StandardName
from dosereg.registry.models import Device, Study

from . import audit_pages, params, selectors, services
from .access import role_required
from .forms import AuditRangeForm

AUDIT_MODALITIES = {value for value, _ in AuditRangeForm.MODALITY_CHOICES if value}
AUDIT_PAGE_ROWS = 100  # rows of the protocol audit table per page


def audit_range(request, *, strict: bool = False):
    """since, until (local midnights: whole days, so a drill-down to the browser's days is exact), modality,
    device, the form showing the range in effect, the parameters."""
    p = params.QueryParams(request.GET, strict=strict)
    tz = timezone.get_current_timezone()
    today = timezone.localdate()
    since_day, until_day = p.date("since"), p.date("until")
    modality = p.choice("modality", AUDIT_MODALITIES) or ""
    device = p.int("device")
    since = datetime.combine(since_day or today - timedelta(days=365), time.min, tzinfo=tz)
    until = datetime.combine(until_day or today, time.min, tzinfo=tz) + timedelta(days=1)
    form = AuditRangeForm(initial={"since": since.date(), "until": until_day or today, "modality": modality,
                                   "device": device})
    return since, until, modality, device, form, p


def _in_scope(audit: dict, scope) -> dict:
    allowed = scope.device_ids()
    if allowed is not None:
        audit["rows"] = [r for r in audit["rows"] if r["device_id"] in allowed]
    return audit


def _audit_context(request) -> tuple[dict, params.QueryParams]:
    """The audit of the request's period, modality and device at the user's sites, with what the audit table and
    the overview page both show around it (the range form, its device choices, the query of the exports)."""
    since, until, modality, device, form, p = audit_range(request)
    scope = scope_for(request.user)
    ctx = _in_scope(selectors.protocol_audit(since=since, until=until, modality=modality, device_id=device), scope)
    ctx.update(form=form, modality=modality, device=device, query=params.query_without(request, "page"),
               until_day=until - timedelta(days=1),
               devices=Device.objects.filter(scope.device_q("pk")).order_by("display_name").only("pk", "display_name"))
    return ctx, p


@require_GET
@role_required(*roles.PROTOCOL_READ)
def protocol_audit(request):
    ctx, p = _audit_context(request)
    # the table shows AUDIT_PAGE_ROWS rows per page (a registry's rooms and names give hundreds of rows, and each
    # row's links and box plots are what the page's time goes into); the overview charts of every row are a page
    # of their own (protocol_overview: about 90 charts and 500 bars at 1M events, half the page's template time)
    pager = params.ListPage.of(ctx["rows"], p.int("page", min_value=1), AUDIT_PAGE_ROWS)
    ctx.update(can_edit=roles.has_role(request.user, roles.PROTOCOL_EDIT), rows=pager.rows, pager=pager,
               n_charts=audit_pages.overview_count(ctx["rows"], selectors.AUDIT_QUANTITIES), param_errors=p.messages())
    return render(request, "web/protocol_audit.html", ctx)


@require_GET
@role_required(*roles.PROTOCOL_READ)
def protocol_overview(request):
    """The audit's overview: per quantity and standard name, every room's median on one axis with the DRL lines
    (same period, modality and device as the audit; every row, not a page of them)."""
    ctx, p = _audit_context(request)
    ctx.update(overview=audit_pages.overview(ctx["rows"], selectors.AUDIT_QUANTITIES), param_errors=p.messages())
    return render(request, "web/protocol_overview.html", ctx)


@require_GET
@role_required(*roles.PROTOCOL_READ)
def protocol_group(request):
    """One audit group: histograms with axis titles and DRL lines (bars drill down), quartiles, outliers."""
    try:
        ctx = audit_pages.group_detail(request.GET, scope=scope_for(request.user))
    except params.InvalidParameter as exc:
        return render(request, "web/protocol_group.html", {"error": exc.message}, status=400)
    f = ctx["filters"]
    ctx["standard_name"] = StandardName.objects.filter(pk=f.standard).first() if f.standard else None
    ctx["device"] = Device.objects.filter(pk=f.device).first() if f.device else None
    audit_record(request=request, action=AuditEvent.ACTION_VIEW, object_type="protocol_group",
                 patient_pks=sorted({o["study"].patient_id for q in ctx["quantities"] for o in q["outliers"]
                                     if o["study"].patient_id}),
                 detail={"query": ctx["query"][:400]})
    return render(request, "web/protocol_group.html", ctx)


# ---------------------------------------------------------------------------
# name mapping: choose, confirm, apply (audited)
# ---------------------------------------------------------------------------
def _items(request) -> list[tuple[str, str]]:
    """The (modality, vendor name) pairs of a mapping request: ``name`` values "MODALITY:vendor name"."""
    out = []
    for raw in request.POST.getlist("name")[:500]:
        modality, sep, source = raw.partition(":")
        modality = modality.strip().upper()
        if not sep or not modality or len(modality) > 8 or len(source) > 256:
            raise params.InvalidParameter("name", "not a modality:name pair")
        out.append((modality, source.replace("\x00", "")))
    if not out:
        raise params.InvalidParameter("name", "choose at least one name")
    return list(dict.fromkeys(out))


@require_http_methods(["GET", "POST"])
@role_required(*roles.PROTOCOL_READ)
def protocol_names(request):
    scope = scope_for(request.user)
    if request.method == "POST":
        if not roles.has_role(request.user, roles.PROTOCOL_EDIT):
            raise PermissionDenied
        if request.POST.get("use_suggestions") == "1" or request.POST.getlist("assign"):
            return _apply_suggestions(request, scope)
        try:
            items = _items(request)
            std_raw, new_name = request.POST.get("standard_name", ""), request.POST.get("new_standard_name", "").strip()
            std = None
            if std_raw:
                std = StandardName.objects.filter(pk=params.parse_int(std_raw, "standard_name")).first()
                if std is None:
                    raise params.InvalidParameter("standard_name", "no such standard name")
            elif not new_name and request.POST.get("unmap") != "1":
                raise params.InvalidParameter("standard_name", "choose a standard name (or unmap)")
        except params.InvalidParameter as exc:
            messages.error(request, exc.message)
            return render(request, "web/protocol_names.html", {**_names_ctx(request, scope), "status_error": exc.message},
                          status=400)
        if request.POST.get("confirm") != "yes":  # step 1: show exactly what will change; nothing is written
            target = std.name if std else (new_name or None)
            counts = dict(((m, d), n) for m, d, n in Study.objects.filter(
                study_description__in=[n for _, n in items], has_ionising_dose=True).filter(scope.study_q())
                .values_list("procedure_modality", "study_description").annotate(n=Count("id")))
            rows = [{"modality": m, "source_name": n, "key": f"{m}:{n}", "studies": counts.get((m, n), 0),
                     "warnings": services.mapping_warnings(n, std) if std else []} for m, n in items]
            return render(request, "web/protocol_mapping_confirm.html", {
                "rows": rows, "target": target, "std": std, "new_name": new_name, "unmap": target is None,
                "total": sum(r["studies"] for r in rows), "any_warning": any(r["warnings"] for r in rows)})
        if std is None and new_name:  # step 2: confirmed
            std = services.standard_name_create(name=new_name, modality=audit_family(items[0][0]))
        changes = services.protocol_mappings_apply(items=items, standard_name=std, user=request.user)
        for c in changes:
            audit_record(request=request, action=AuditEvent.ACTION_CHANGE, object_type="protocol_mapping",
                         object_id=f"{c['modality']}:{c['source_name']}"[:64], detail=c)
        messages.success(request, f"{len(changes)} name(s) {'mapped to ' + std.name if std else 'unmapped'}.")
        return redirect("web:protocol_names")
    return render(request, "web/protocol_names.html", _names_ctx(request, scope))


def _apply_suggestions(request, scope):
    """Bulk: each selected name to its own suggestion (same body region and intent), shown with its confidence
    and applied only once confirmed; names without a suggestion are left as they are."""
    standards = list(StandardName.objects.all())
    if request.POST.get("confirm") == "yes":
        by_std: dict[int, list[tuple[str, str]]] = {}
        for raw in request.POST.getlist("assign")[:500]:
            std_id, _, pair = raw.partition(":")
            modality, sep, source = pair.partition(":")
            try:
                key = params.parse_int(std_id, "assign")
            except params.InvalidParameter:
                key = None
            if key is None or not sep:
                return render(request, "web/protocol_names.html",
                              {**_names_ctx(request, scope), "status_error": "not a suggestion to apply"}, status=400)
            by_std.setdefault(key, []).append((modality.upper()[:8], source[:256]))
        known = {s.pk: s for s in standards}
        changes = []
        for std_id, items in by_std.items():
            if std_id not in known:
                return render(request, "web/protocol_names.html",
                              {**_names_ctx(request, scope), "status_error": "no such standard name"}, status=400)
            changes += services.protocol_mappings_apply(items=items, standard_name=known[std_id], user=request.user)
        for c in changes:
            audit_record(request=request, action=AuditEvent.ACTION_CHANGE, object_type="protocol_mapping",
                         object_id=f"{c['modality']}:{c['source_name']}"[:64], detail={**c, "via": "suggestion"})
        messages.success(request, f"{len(changes)} name(s) mapped to their suggestions.")
        return redirect("web:protocol_names")
    try:
        items = _items(request)
    except params.InvalidParameter as exc:
        return render(request, "web/protocol_names.html", {**_names_ctx(request, scope), "status_error": exc.message},
                      status=400)
    rows = []
    for modality, source in items:
        sugg = services.suggestion_for(source, modality, standards)
        rows.append({"modality": modality, "source_name": source, "suggestion": sugg.key if sugg else None,
                     "confidence": round(sugg.confidence * 100) if sugg else None,
                     "assign": f"{sugg.key.pk}:{modality}:{source}" if sugg else ""})
    return render(request, "web/protocol_suggestions_confirm.html",
                  {"rows": rows, "n_mapped": sum(1 for r in rows if r["suggestion"])})


def audit_family(modality: str) -> str:
    from dosereg.protocols.naming import family

    return family(modality)


def _names_ctx(request, scope) -> dict:
    ctx = selectors.name_mappings(since=timezone.now() - timedelta(days=730), scope=scope)
    ctx["can_edit"] = roles.has_role(request.user, roles.PROTOCOL_EDIT)
    return ctx



@require_GET
@role_required(*roles.PROTOCOL_READ)
def technique(request):
    """Technique per room and protocol (issue 16): kV, mA, pulse rate and filtration distributions, mammography
    AGD per view and thickness band, and the fluoroscopy pulse rates and dose modes."""
    since, until, modality, device, form, p = audit_range(request)
    scope = scope_for(request.user)
    ctx = selectors.fluoro_technique(since=since, until=until, device_id=device, scope=scope)
    ctx.update(form=form, query=request.GET.urlencode(), param_errors=p.messages(), modality=modality,
               distributions=audit_pages.technique_distributions(since=since, until=until, modality=modality,
                                                                device_id=device, scope=scope),
               mammo=audit_pages.mammography_agd(since=since, until=until, device_id=device, scope=scope))
    return render(request, "web/fluoro_technique.html", ctx)
