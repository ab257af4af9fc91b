"""Devices: every unit with its identity, last object and usual gap, and (RSO, admin) rename, merge and split.

Physicists read; RSOs and admins act, on devices at their sites only. Every action is in the audit trail with
what moved; merge and split run through ``dosereg.pipeline.flow`` so the protocol summaries and exposure windows
of the moved studies are refreshed like after an ingest."""
from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from dosereg.access import roles
from dosereg.access.scope import scope_for
from dosereg.audit.models import AuditEvent
from dosereg.audit.services import audit_record
from dosereg.pipeline import flow
from dosereg.registry import devices as registry_devices

from . import params
from . import selectors_devices as sel
from .access import role_required

C = AuditEvent.ACTION_CHANGE


@require_GET
@role_required(*roles.DEVICE_READ)
def device_list(request):
    scope = scope_for(request.user)
    rows = sel.device_rows(scope=scope)
    audit_record(request=request, action=AuditEvent.ACTION_VIEW, object_type="device_list",
                 detail={"devices": len(rows)})
    return render(request, "web/devices.html", {
        "rows": rows, "scope": scope, "can_edit": roles.has_role(request.user, roles.DEVICE_EDIT),
        "gap_window": sel.GAP_WINDOW,
    })


@require_GET
@role_required(*roles.DEVICE_READ)
def device_detail(request, pk: int):
    scope = scope_for(request.user)
    device = sel.device_for_user(scope=scope, device_id=pk)
    if device is None:
        raise Http404
    if device.merged_into_id:
        messages.info(request, f"device {pk} was merged into this device")
        return redirect("web:device_detail", pk=device.merged_into_id)
    rows = sel.device_rows(scope=scope, device_id=pk)
    if not rows:
        raise Http404
    audit_record(request=request, action=AuditEvent.ACTION_VIEW, object_type="device", object_id=pk)
    can_edit = roles.has_role(request.user, roles.DEVICE_EDIT)
    return render(request, "web/device_detail.html", {
        "row": rows[0], "device": device, "can_edit": can_edit, "gap_window": sel.GAP_WINDOW,
        "can_split": can_edit and len(rows[0].identities) > 1,
        "targets": sel.merge_targets(scope=scope, exclude_id=pk) if can_edit else [],
    })


def _n_studies(n: int) -> str:
    return f"{n} study" if n == 1 else f"{n} studies"


def _studies(change) -> dict:
    """The moved studies for the audit trail (their ids, the first 1000)."""
    return {"n_studies": len(change.study_ids), "studies": list(change.study_ids[:1000])}


def _editable(request, pk: int):
    device = sel.device_for_user(scope=scope_for(request.user), device_id=pk)
    if device is None or device.merged_into_id:
        raise Http404
    return device


@require_POST
@role_required(*roles.DEVICE_EDIT)
def device_rename(request, pk: int):
    device = _editable(request, pk)
    name = params.clean_text(request.POST.get("display_name"), max_length=256).strip()
    if not name:
        messages.error(request, "a device needs a name")
        return redirect("web:device_detail", pk=pk)
    changed = registry_devices.device_rename(device_id=device.pk, display_name=name)
    if changed:
        audit_record(request=request, action=C, object_type="device", object_id=pk,
                     detail={"rename": {f: list(v) for f, v in changed.items()}})
        messages.success(request, f"renamed to “{name}”")
    return redirect("web:device_detail", pk=pk)


@require_POST
@role_required(*roles.DEVICE_EDIT)
def device_merge(request, pk: int):
    source = _editable(request, pk)
    p = params.QueryParams(request.POST, strict=False)
    target_id = p.int("target")
    target = sel.device_for_user(scope=scope_for(request.user), device_id=target_id) if target_id else None
    if target is None or target.merged_into_id:
        messages.error(request, "choose a device at your sites to merge into")
        return redirect("web:device_detail", pk=pk)
    if request.POST.get("confirm") != "yes":
        messages.error(request, "confirm the merge: it moves every study of this device")
        return redirect("web:device_detail", pk=pk)
    try:
        change = flow.device_merge(source_id=source.pk, target_id=target.pk)
    except registry_devices.DeviceChangeError as exc:
        messages.error(request, str(exc))
        return redirect("web:device_detail", pk=pk)
    audit_record(request=request, action=C, object_type="device", object_id=pk,
                 detail={"merge_into": target.pk, "source": str(source), "target": str(target),
                         "moved": change.moved, "left": change.left, **_studies(change)})
    messages.success(request, f"“{source}” merged into “{target}”: {_n_studies(change.moved.get('studies', 0))} moved")
    for left in change.left:
        messages.warning(request, f"not moved, check them on the merged device: {left}")
    return redirect("web:device_detail", pk=target.pk)


@require_POST
@role_required(*roles.DEVICE_EDIT)
def device_split(request, pk: int):
    device = _editable(request, pk)
    p = params.QueryParams(request.POST, strict=False)
    identity_ids = p.ints("identities")
    name = params.clean_text(request.POST.get("display_name"), max_length=256)
    try:
        change = flow.device_split(device_id=device.pk, identity_ids=identity_ids, display_name=name)
    except registry_devices.DeviceChangeError as exc:
        messages.error(request, str(exc))
        return redirect("web:device_detail", pk=pk)
    audit_record(request=request, action=C, object_type="device", object_id=pk,
                 detail={"split_to": change.device_id, "identities": identity_ids, "moved": change.moved,
                         "left": change.left, **_studies(change)})
    messages.success(request, f"{_n_studies(change.moved.get('studies', 0))} moved to a new device")
    for left in change.left:
        messages.warning(request, f"not moved: {left}")
    return redirect("web:device_detail", pk=change.device_id)
