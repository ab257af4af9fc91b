"""Skin-dose pages: the map PNG, the interactive 3D view, and plotly.js served locally (no CDN)."""
from __future__ import annotations

from pathlib import Path

from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from dosereg.access import roles
from dosereg.access.scope import scope_for
from dosereg.audit.models import AuditEvent
from dosereg.audit.services import audit_record
from dosereg.registry.merge_group import patient_group_ids
from dosereg.registry.models import Patient, Study
from dosereg.skindose import selectors as skin
from dosereg.skindose import summing
from dosereg.skindose.render import skin_map_png

from .access import role_required
from .middleware import CSP


def _study(request, pk: int) -> Study:
    study = Study.objects.select_related("device").filter(scope_for(request.user).study_q(), pk=pk).first()
    if study is None:
        raise Http404
    return study


@require_GET
@role_required(*roles.CLINICAL)
def study_skin_map_png(request, pk: int):
    study = _study(request, pk)
    png = skin.study_skin_map_png(study.pk)
    if not png:
        raise Http404
    audit_record(request=request, action=AuditEvent.ACTION_VIEW, object_type="skin_map", object_id=study.pk,
                 patient_pks=[study.patient_id])
    return HttpResponse(png, content_type="image/png")


@require_GET
@role_required(*roles.CLINICAL)
def study_skin_map_3d(request, pk: int):
    study = _study(request, pk)
    result = skin.study_skin_dose(study.pk)
    cells = skin.study_skin_map_cells(study.pk)
    if result is None or not result.computable or not cells:
        raise Http404
    audit_record(request=request, action=AuditEvent.ACTION_VIEW, object_type="skin_map", object_id=study.pk,
                 patient_pks=[study.patient_id])
    response = render(request, "skindose/map_3d.html", {"study": study, "skin": result, "cells": cells})
    # plotly.js writes its own <style> elements: this page allows inline styles (scripts stay 'self' only)
    response.headers["Content-Security-Policy"] = CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
    return response


@require_GET
@role_required(*roles.CLINICAL)
def patient_skin_map_sum_png(request, pk: int, days: int):
    """The patient's summed skin-dose map over the period of ``days`` with the highest value (same phantom,
    orientation and skin cells only); 404 when that period's maps cannot be added."""
    patient = Patient.objects.filter(scope_for(request.user).patient_q(), pk=pk).first()
    if patient is None or days not in skin.SUM_WINDOWS_DAYS:
        raise Http404
    procs = skin.procedures_skin_dose(patient_ids=patient_group_ids(patient.pk))
    period = summing.worst_window(procs, days, with_cells=True)
    if period is None or period.method != summing.METHOD_SUMMED_MAP or not period.cells or period.peak_gy is None:
        raise Http404
    audit_record(request=request, action=AuditEvent.ACTION_VIEW, object_type="skin_map_sum", object_id=patient.pk,
                 patient_pks=[patient.pk], detail={"days": days, "studies": period.study_ids})
    png = skin_map_png(period.cells, phantom=period.phantom, psd_gy=period.peak_gy)
    return HttpResponse(png, content_type="image/png")


@require_GET
def vendor_plotly(request):
    """plotly.min.js from the installed plotly package (the version pinned with PySkinDose)."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    response = FileResponse(open(path, "rb"), content_type="text/javascript")
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response
