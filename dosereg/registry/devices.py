"""Rename, merge and split devices (the web's Devices page calls these through ``dosereg.pipeline.flow``).

A merge moves everything of one device to another: studies, received identities, identifiers (so later
objects from the unit resolve to the target), software history, dose objects, and every other row that points
at the device (alert rules, room settings, cases, ...: found through Django's relations, so no app above the
registry is imported; a row that cannot move because the target already has one like it stays with the
source and is reported). The source is kept, marked ``merged_into``, so old links still resolve.

A split moves the studies that arrived with chosen received identities, those identities, and the identifiers
only they produced, to a new device. Both return the studies moved for the follow-up steps (protocol
summaries, exposure windows), which the caller runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from django.db import IntegrityError, transaction

from . import device_identity as DI
from .models import Device, DeviceIdentifier, DeviceIdentity, DeviceSoftwareVersion, DoseObject, Study


class DeviceChangeError(ValueError):
    """A merge or split that cannot be done (the message says why, for the user)."""


@dataclass
class DeviceChange:
    device_id: int                       # the device that now holds the studies (target, or the new device)
    study_ids: tuple[int, ...] = ()
    patient_ids: tuple[int, ...] = ()
    moved: dict[str, int] = field(default_factory=dict)  # what moved, counted per kind of row
    left: list[str] = field(default_factory=list)         # rows that could not move (already on the target)


RENAMABLE = ("display_name", "institution", "department")


def device_rename(*, device_id: int, display_name: str, institution: str | None = None,
                  department: str | None = None) -> dict[str, tuple[str, str]]:
    """Set the name shown for a device (and optionally its site and department). Returns {field: (old, new)}."""
    with transaction.atomic():
        device = Device.objects.select_for_update().get(pk=device_id)
        wanted = {"display_name": display_name.strip()[:256]}
        if institution is not None:
            wanted["institution"] = institution.strip()[:256]
        if department is not None:
            wanted["department"] = department.strip()[:256]
        changed = {f: (getattr(device, f), v) for f, v in wanted.items() if getattr(device, f) != v}
        for f, (_, v) in changed.items():
            setattr(device, f, v)
        if changed:
            device.save(update_fields=list(changed))
    return changed


def _studies(qs) -> tuple[tuple[int, ...], tuple[int, ...]]:
    rows = list(qs.values_list("pk", "patient_id"))
    return tuple(sorted(pk for pk, _ in rows)), tuple(sorted({p for _, p in rows if p}))


_HANDLED = {(Study, "device"), (DeviceIdentity, "device"), (DeviceIdentifier, "device"),
            (DeviceSoftwareVersion, "device"), (DoseObject, "device"), (Device, "merged_into")}


def _move_related(source: Device, target: Device, change: DeviceChange) -> None:
    """Every other foreign key to the source (other apps' rows) moved to the target, one savepoint each."""
    # include_hidden: foreign keys declared with related_name="+" (alert rules and routes, cases) count too
    for rel in Device._meta.get_fields(include_hidden=True):
        if not (rel.auto_created and not rel.concrete and rel.one_to_many):
            continue
        model, fk = rel.related_model, rel.field  # type: ignore[union-attr]
        if not isinstance(model, type) or (model, fk.name) in _HANDLED:
            continue
        qs = model._default_manager.filter(**{fk.name: source.pk})
        try:
            with transaction.atomic():
                n = qs.update(**{fk.name: target.pk})
        except IntegrityError:
            change.left.append(f"{model._meta.verbose_name_plural} ({model._meta.label}): the target has its own")
            continue
        if n:
            change.moved[model._meta.label] = n


def device_merge(*, source_id: int, target_id: int) -> DeviceChange:
    """Move everything of ``source`` to ``target`` (the same physical unit seen as two devices)."""
    if source_id == target_id:
        raise DeviceChangeError("a device cannot be merged into itself")
    with transaction.atomic():
        locked = {d.pk: d for d in Device.objects.select_for_update().filter(pk__in=[source_id, target_id])}
        source, target = locked.get(source_id), locked.get(target_id)
        if source is None or target is None:
            raise DeviceChangeError("device not found")
        if source.merged_into_id or target.merged_into_id:
            raise DeviceChangeError("a device that was merged into another cannot take part in a merge")
        change = DeviceChange(target.pk)
        change.study_ids, change.patient_ids = _studies(Study.objects.filter(device_id=source.pk))
        change.moved["studies"] = Study.objects.filter(device_id=source.pk).update(device_id=target.pk)
        change.moved["dose objects"] = DoseObject.objects.filter(device_id=source.pk).update(device_id=target.pk)
        change.moved["identities"] = DeviceIdentity.objects.filter(device_id=source.pk).update(device_id=target.pk)
        change.moved["identifiers"] = DeviceIdentifier.objects.filter(device_id=source.pk).update(device_id=target.pk)
        have = set(DeviceSoftwareVersion.objects.filter(device_id=target.pk).values_list("software_versions", flat=True))
        sw = DeviceSoftwareVersion.objects.filter(device_id=source.pk)
        change.moved["software versions"] = sw.exclude(software_versions__in=have).update(device_id=target.pk)
        _move_related(source, target, change)
        Device.objects.filter(merged_into_id=source.pk).update(merged_into_id=target.pk)
        if source.last_seen and (target.last_seen is None or source.last_seen > target.last_seen):
            target.last_seen = source.last_seen
            if source.software_versions:
                target.software_versions = source.software_versions
        if source.first_seen < target.first_seen:
            target.first_seen = source.first_seen
        target.save(update_fields=["last_seen", "software_versions", "first_seen"])
        source.merged_into = target
        source.save(update_fields=["merged_into"])
    from . import services  # resolutions remembered by this worker may name the source

    services._DEVICE_CACHE.clear()
    return change


def device_split(*, device_id: int, identity_ids: list[int], display_name: str = "") -> DeviceChange:
    """Move the studies that arrived with ``identity_ids`` (received identities of the device), those
    identities, and the identifiers only they produced, to a new device."""
    with transaction.atomic():
        device = Device.objects.select_for_update().filter(pk=device_id, merged_into__isnull=True).first()
        if device is None:
            raise DeviceChangeError("device not found")
        all_ids = set(DeviceIdentity.objects.filter(device_id=device.pk).values_list("pk", flat=True))
        chosen = set(identity_ids)
        if not chosen or not chosen <= all_ids:
            raise DeviceChangeError("choose one or more identities of this device")
        if chosen == all_ids:
            raise DeviceChangeError("at least one identity must stay with the device (rename it instead)")
        moving = list(DeviceIdentity.objects.filter(pk__in=chosen).order_by("pk"))
        staying = list(DeviceIdentity.objects.filter(pk__in=all_ids - chosen))

        def idents(rows) -> set[tuple[str, str]]:
            return {i for r in rows for i in DI.received(r.manufacturer, r.model, r.serial_number, r.station_name,
                                                        r.device_observer_uid).identifiers()}

        only_moving = idents(moving) - idents(staying)
        first = moving[0]
        studies = Study.objects.filter(device_id=device.pk, received_identity_id__in=chosen)
        latest = studies.exclude(study_datetime__isnull=True).order_by("-study_datetime").values_list(
            "study_datetime", flat=True).first()
        manu = DI.manufacturer_display(first.manufacturer)[:128]
        new = Device.objects.create(
            manufacturer=manu, model=first.model, serial_number=first.serial_number,
            station_name=first.station_name, device_observer_uid=first.device_observer_uid,
            institution=device.institution, department=device.department, modality=device.modality,
            display_name=(display_name.strip() or " ".join(
                x for x in (first.station_name, manu, first.model) if x))[:256],
            last_seen=latest,
        )
        change = DeviceChange(new.pk)
        change.study_ids, change.patient_ids = _studies(studies)
        change.moved["studies"] = studies.update(device_id=new.pk)
        change.moved["dose objects"] = DoseObject.objects.filter(
            device_id=device.pk, study_id__in=change.study_ids).update(device_id=new.pk)
        change.moved["identities"] = DeviceIdentity.objects.filter(pk__in=chosen).update(device_id=new.pk)
        n = 0
        for kind, value in only_moving:
            n += DeviceIdentifier.objects.filter(device_id=device.pk, kind=kind, value=value).update(device_id=new.pk)
        change.moved["identifiers"] = n
    from . import services

    services._DEVICE_CACHE.clear()
    return change
