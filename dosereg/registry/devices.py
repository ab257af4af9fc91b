"""Rename, merge and split devices (the web's Devices page calls these through ``dosereg.pipeline.flow``).

A merge moves everything of one device to another: studies, received identities, identifiers (so later
objects from the unit resolve to the target), software history, dose objects, and every other row that points
at the device (alert rules, room settings, cases, ...: found through Django's relations, so no app above the
registry is imported; a row that cannot move because the target already has one like it stays with the
source and is reported). The source is kept, marked ``merged_into``, so old links still resolve.

A split moves the studies that arrived with chosen received identities, those identities, and the identifiers
only they produced, to a new device, with the software history that belongs to them: a version only the moved
reports carried moves, one that reports of both devices carried is kept by both (each dated by its own reports),
one no moved report carried stays. Both return the studies moved for the follow-up steps (protocol summaries,
exposure windows), which the caller runs.

Software history rows (``DeviceSoftwareVersion``) are attributed through ``DoseObject.software_versions`` (the
version each report carried). A report ingested before that was recorded (NULL) cannot be attributed: the split
says so in ``DeviceChange.left`` (reprocessing the reports records it).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from django.db import IntegrityError, transaction
from django.db.models import Max, Min

from . import device_identity as DI
from . import device_resolution
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
        _software_combine(source, target, change)
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
    device_resolution._DEVICE_CACHE.clear()  # resolutions remembered by this worker may name the source
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
        _software_split(device, new, change)
    device_resolution._DEVICE_CACHE.clear()
    return change


def _software_combine(source: Device, target: Device, change: DeviceChange) -> None:
    """Merge: the source's software history joins the target's. A version both have is one row, dated by the
    earlier first sighting; the source keeps none."""
    theirs = dict(DeviceSoftwareVersion.objects.filter(device_id=target.pk).values_list("software_versions", "pk"))
    moved = combined = 0
    for row in DeviceSoftwareVersion.objects.filter(device_id=source.pk).order_by("pk"):
        pk = theirs.get(row.software_versions)
        if pk is None:
            moved += DeviceSoftwareVersion.objects.filter(pk=row.pk).update(device_id=target.pk)
            continue
        DeviceSoftwareVersion.objects.filter(pk=pk, first_seen__gt=row.first_seen).update(first_seen=row.first_seen)
        row.delete()
        combined += 1
    change.moved["software versions"] = moved
    if combined:
        change.moved["software versions combined"] = combined


def _software_by_device(device_ids: list[int]) -> dict[int, dict[str, tuple]]:
    """{device: {version: (first received, last received)}} over the devices' ingested reports that recorded one."""
    out: dict[int, dict[str, tuple]] = {d: {} for d in device_ids}
    for dev, sw, first, last in (DoseObject.objects.filter(device_id__in=device_ids, software_versions__isnull=False)
                                 .exclude(software_versions="").values_list("device_id", "software_versions")
                                 .annotate(first=Min("received_at"), last=Max("received_at"))
                                 .values_list("device_id", "software_versions", "first", "last")):
        out[dev][sw or ""] = (first, last)
    return out


def _software_split(device: Device, new: Device, change: DeviceChange) -> None:
    """Split (after the reports moved): exactly the history rows that belong to the moved reports go with them.
    A version carried only by moved reports moves; one carried by reports of both devices is kept by both, each
    row dated by its device's first report carrying it; one no moved report carried stays. Each device's current
    version becomes the one its latest report carried."""
    seen = _software_by_device([device.pk, new.pk])
    moving, staying = seen[new.pk], seen[device.pk]
    # the device's reports all recorded their version: a shared version's row is re-dated by the device's own first
    # report (else an unrecorded earlier report may be the first sighting: the date stays)
    staying_known = not DoseObject.objects.filter(device_id=device.pk, software_versions__isnull=True).exists()
    moved = copied = 0
    for row in DeviceSoftwareVersion.objects.filter(device_id=device.pk, software_versions__in=list(moving)):
        if row.software_versions in staying:
            copied += 1
            DeviceSoftwareVersion.objects.create(device=new, software_versions=row.software_versions)
            if staying_known:
                DeviceSoftwareVersion.objects.filter(pk=row.pk).update(first_seen=staying[row.software_versions][0])
        else:
            moved += DeviceSoftwareVersion.objects.filter(pk=row.pk).update(device_id=new.pk)
    # a version a moved report carried that the history lacks (history written before it was kept per device)
    have = set(DeviceSoftwareVersion.objects.filter(device_id=new.pk).values_list("software_versions", flat=True))
    DeviceSoftwareVersion.objects.bulk_create([DeviceSoftwareVersion(device=new, software_versions=sw)
                                               for sw in moving if sw not in have], ignore_conflicts=True)
    for sw, (first, _) in moving.items():  # the new device's rows are dated by its own (earliest) reports
        DeviceSoftwareVersion.objects.filter(device_id=new.pk, software_versions=sw, first_seen__gt=first).update(
            first_seen=first)
    change.moved["software versions"] = moved
    if copied:
        change.moved["software versions shared"] = copied
    unknown = DoseObject.objects.filter(device_id=new.pk, software_versions__isnull=True).count()
    if unknown:
        change.left.append(f"software versions of {unknown} moved report(s) received before they were recorded per "
                           "report: their history stays with the device (reprocess the reports to record it)")
    for dev, versions in ((new, moving), (device, staying)):
        if versions:
            latest = max(versions.items(), key=lambda kv: kv[1][1])[0]
            if dev.software_versions != latest:
                dev.software_versions = latest
                dev.save(update_fields=["software_versions"])
