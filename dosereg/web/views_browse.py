"""The study browser pages (``/studies/`` and its exports). Thin: access, ``browse`` selectors, audit, render."""
from __future__ import annotations

import tempfile

from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from dosereg.access import roles
from dosereg.access.scope import scope_for
from dosereg.audit.models import AuditEvent
from dosereg.audit.services import audit_record

from . import browse, exports, params
from .access import role_required

FILTER_KEYS = ("modality", "site", "device", "since", "until", "protocol", "standard", "description", "ionising",
               "reported", "age", "sex", "not_patient", "flagged",
               *[f"{stem}_{end}" for stem in browse.DOSE_RANGES for end in ("min", "max")])


# where a page is in the order: a page number (the jump), or keyset cursors (next / previous / last)
PAGE_KEYS = ("page", "after", "before", "end")

# the unit of each numeric column, in its heading (values are formatted in it by the template)
COLUMN_UNITS = {"age": "y", "kap": "Gy·cm²", "kar": "Gy", "fluoro": "min:s", "ctdivol": "mGy", "dlp": "mGy·cm"}


@require_GET
@role_required(*roles.CLINICAL)
def study_browser(request):
    f = browse.read_filters(request.GET)
    scope = scope_for(request.user)
    page = browse.study_page(f, scope=scope)
    audit_record(request=request, action=AuditEvent.ACTION_VIEW, object_type="study_list",
                 patient_pks={s.patient_id for s in page.rows if s.patient_id},
                 detail={"filters": {k: request.GET.get(k) for k in FILTER_KEYS if request.GET.get(k)},
                         "sort": f.sort, "page": page.page, "count": page.count,
                         **{k: v for k, v in (("after", f.after), ("before", f.before)) if v is not None},
                         **({"end": True} if f.end else {})})
    base = params.query_without(request, "sort", *PAGE_KEYS)
    columns = []
    for key, (_, heading) in browse.SORTS.items():
        nxt = key if f.sort == f"-{key}" else f"-{key}"  # first click: largest / newest first
        state = ("descending" if f.descending else "ascending") if f.sort_key == key else "none"
        columns.append({"key": key, "heading": heading, "next": nxt, "state": state, "unit": COLUMN_UNITS.get(key, ""),
                        "num": key in COLUMN_UNITS or key == "events"})
    ctx = {
        "f": f, "page": page, "columns": columns, "base_query": base,
        "page_query": params.query_without(request, *PAGE_KEYS),
        "page_hidden": [(k, v) for k, vs in request.GET.lists() if k not in PAGE_KEYS for v in vs],
        "export_query": params.query_without(request, *PAGE_KEYS, "per_page", "only"),
        # the page as shown: its cursor (after / before / end) or page number as in this URL
        "page_export_query": params.query_without(request, "only"),
        "options": browse.filter_options(scope=scope), "modalities": browse.MODALITIES, "sexes": browse.SEXES,
        "age_bands": browse.AGE_BAND_LABELS, "not_patient_choices": browse.NOT_PATIENT,
        "flagged_choices": browse.FLAGGED,
        "page_sizes": browse.PAGE_SIZES, "dose_ranges": [
            {"stem": stem, "label": label, "unit": unit, "min": request.GET.get(f"{stem}_min", ""),
             "max": request.GET.get(f"{stem}_max", "")} for stem, (_, label, unit) in browse.DOSE_RANGES.items()],
        "param_errors": [f"filter {n!r} ignored: {m}" for n, m in f.errors.items()], "scope": scope,
        "filtered": any(request.GET.get(k) for k in FILTER_KEYS) or "description" in request.GET,
        "reported_label": browse.DOSE_RANGES[f.reported][1] if f.reported else "",
        "modality_links": [m for m in browse.modalities_in_scope(scope=scope) if m in browse.MODALITY_QUANTITIES],
    }
    return render(request, "web/studies.html", ctx)


@require_GET
@role_required(*roles.CLINICAL)
def study_browser_export(request, fmt: str):
    if fmt not in ("csv", "xlsx"):
        raise Http404
    try:  # a file holds exactly the filtered set: an invalid filter is a 400, never silently dropped
        f = browse.read_filters(request.GET, strict=True)
    except params.InvalidParameter as exc:
        return JsonResponse({"ok": False, "errors": exc.as_dict()}, status=400)
    scope = scope_for(request.user)
    audit_record(request=request, action=AuditEvent.ACTION_EXPORT, object_type="study_list", object_id=fmt,
                 detail={"filters": {k: request.GET.get(k) for k in FILTER_KEYS if request.GET.get(k)},
                         "sort": f.sort, "only_page": request.GET.get("only") == "page", "page": f.page,
                         "per_page": f.page_size})
    name = f"dosereg-studies-{timezone.localtime():%Y%m%d-%H%M}.{fmt}"
    if fmt == "csv":  # only=page: the rows of the page as shown (e.g. the ten highest DLP); else the whole set
        return exports.csv_response(name, browse.STUDY_HEADER,
                                    browse.study_rows(f, scope=scope, only_page=request.GET.get("only") == "page"))
    tmp = tempfile.TemporaryFile(suffix=".xlsx")
    browse.write_xlsx(browse.export_sheets(f, scope=scope), tmp)
    tmp.seek(0)
    resp = FileResponse(tmp, as_attachment=True, filename=name,
                        content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    resp["Cache-Control"] = "no-store"
    return resp


@require_GET
@role_required(*roles.CLINICAL)
def modality_home(request, modality: str):
    modality = modality.upper()
    if modality not in browse.MODALITIES:
        raise Http404
    scope = scope_for(request.user)
    ov = browse.modality_overview(modality=modality, scope=scope)
    audit_record(request=request, action=AuditEvent.ACTION_VIEW, object_type="modality_overview", object_id=modality)
    table = []
    for r in ov["rooms"]:
        links = [f"modality={modality}&device={r['device'].pk}&since={a:%Y-%m-%d}&until={b:%Y-%m-%d}&not_patient=exclude"
                 for a, b in zip(ov["months"], ov["month_ends"])]
        table.append({**r, "cells": [
            {"n": n, "link": link, "medians": [{"v": r["medians"][q["key"]][i], "fluoro": q["key"] == "fluoro_time_total_s"}
                                               for q in ov["quantities"]]}
            for i, (n, link) in enumerate(zip(r["counts"], links))]})
    chart = {"months": [f"{m:%Y-%m}" for m in ov["months"]], "quantities": ov["quantities"],
             "rooms": [{"name": r["name"], "counts": r["counts"], "medians": r["medians"]} for r in ov["rooms"]]}
    return render(request, "web/modality_home.html", {
        **ov, "table": table, "chart": chart, "scope": scope,
        "modalities": browse.modalities_in_scope(scope=scope),
    })
