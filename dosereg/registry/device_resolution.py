"""Which physical unit an object came from (``device_resolve_identity``): by Device Observer UID, serial number
with manufacturer and model, then station name (``device_identity`` normalises them), remembered a minute per
process (``_DEVICE_CACHE``). Renaming, merging and splitting devices: ``devices``."""
from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from dosereg.rdsr import records as R

from . import device_identity as DI
from .models import Device, DeviceIdentifier, DeviceIdentity, DeviceSoftwareVersion
from .values import _s


# Device resolutions are remembered for a minute per worker: a 316-event report needs one device, not a lookup
# (last_seen is only written once a minute anyway). Keyed by the identity as received.
_DEVICE_CACHE: dict[tuple, tuple[float, Device, DeviceIdentity]] = {}
_DEVICE_CACHE_S = 60.0


def device_resolve(info: R.DeviceInfo, *, modality: str = "") -> Device | None:
    """The physical unit an object came from (see ``device_resolve_identity``)."""
    return device_resolve_identity(info, modality=modality)[0]


def _device_cache_hit(info: R.DeviceInfo) -> tuple[DI.ReceivedIdentity, tuple, tuple | None]:
    """The identity as received, its cache key, and this process's remembered (time, device, identity) for it
    when fresh (under a minute), else None."""
    import time as _time

    rid = DI.received(info.manufacturer, info.model, info.serial_number, info.station_name, info.device_observer_uid)
    key = (rid.key, _s(info.software_versions))
    hit = _DEVICE_CACHE.get(key) if rid.identifiers() else None
    return rid, key, hit if hit and _time.monotonic() - hit[0] < _DEVICE_CACHE_S else None


def device_cache_peek(info: R.DeviceInfo) -> int | None:
    """The device this process remembers for this identity as received (fresh, under a minute), else None: the
    ingest asks in its first statement whether it is still a device of its own (``device_resolve_identity``'s
    ``cached_alive``)."""
    hit = _device_cache_hit(info)[2]
    return hit[1].pk if hit else None


def device_resolve_identity(info: R.DeviceInfo, *, modality: str = "",
                            cached_alive: tuple[int, bool] | None = None) -> tuple[Device | None, DeviceIdentity | None]:
    """Find the physical unit by Device Observer UID, then serial number with manufacturer and model (both
    normalised: ``registry.device_identity``), and by station name only when nothing stronger decides (two
    units that share a station name are never merged on it); remember every identifier. Returns the device and
    the identity row of the values as received (kept on the study)."""
    import time as _time

    rid, key, hit = _device_cache_hit(info)
    idents = rid.identifiers()
    if not idents:
        return None, None
    # a device merged into another by a web user since (in another process) is not used: the caller asked already
    # (``cached_alive``: device id, still its own), else one primary-key probe
    if hit and (
            cached_alive[1] if cached_alive is not None and cached_alive[0] == hit[1].pk
            else Device.objects.filter(pk=hit[1].pk, merged_into__isnull=True).exists()):
        return hit[1], hit[2]
    device = _device_resolve_db(info, rid, idents, modality)
    identity = _identity_row(device, rid)

    def remember() -> None:  # only once committed: a rolled-back device must never be cached
        if len(_DEVICE_CACHE) > 1000:
            _DEVICE_CACHE.clear()
        _DEVICE_CACHE[key] = (_time.monotonic(), device, identity)

    transaction.on_commit(remember)
    return device, identity


def _identity_row(device: Device, rid: DI.ReceivedIdentity) -> DeviceIdentity:
    row = DeviceIdentity.objects.filter(key=rid.key).first()
    if row is None:
        DeviceIdentity.objects.bulk_create([DeviceIdentity(
            device=device, key=rid.key, manufacturer=rid.manufacturer, model=rid.model,
            serial_number=rid.serial_number, station_name=rid.station_name,
            device_observer_uid=rid.device_observer_uid)], ignore_conflicts=True)
        row = DeviceIdentity.objects.get(key=rid.key)
    return row


def _match(found: dict[tuple[str, str], int], idents: list[tuple[str, str]]) -> int | None:
    """The device the identifiers name: observer UID or serial first; a station only when the object carries
    no stronger identifier, or the device it names has none of the kinds the object carries (else a unit with
    the same station label but another serial or observer UID would be merged into it)."""
    by_kind = {k: found[(k, v)] for k, v in idents if (k, v) in found}
    uid_dev, serial_dev = by_kind.get(DI.KIND_OBSERVER_UID), by_kind.get(DI.KIND_SERIAL)
    if uid_dev is not None and serial_dev is not None and uid_dev != serial_dev:
        return serial_dev  # an observer UID copied between units: the serial with manufacturer and model decides
    carried = [k for k, _ in idents if k in DI.STRONG_KINDS]
    if uid_dev is not None and serial_dev is None and DI.KIND_SERIAL in carried and DeviceIdentifier.objects.filter(
            device_id=uid_dev, kind=DI.KIND_SERIAL).exists():
        return None  # the unit with this observer UID has another serial: the UID was copied, a different unit
    strong = uid_dev if uid_dev is not None else serial_dev
    if strong is not None:
        return strong
    station_dev = by_kind.get(DI.KIND_STATION)
    if station_dev is None:
        return None
    if carried and DeviceIdentifier.objects.filter(device_id=station_dev, kind__in=carried).exists():
        return None  # the unit with this station label has another serial / observer UID: a different unit
    return station_dev


def _device_resolve_db(info: R.DeviceInfo, rid: DI.ReceivedIdentity, idents: list[tuple[str, str]],
                       modality: str) -> Device:
    found = {
        (d.kind, d.value): d.device_id
        for d in DeviceIdentifier.objects.filter(value__in=[v for _, v in idents])
    }
    device_id = _match(found, idents)
    now = timezone.now()
    if device_id is not None:
        device = Device.objects.filter(pk=device_id).first()
        while device is not None and device.merged_into_id:  # identifiers follow a merge; be safe all the same
            device = Device.objects.filter(pk=device.merged_into_id).first()
    else:
        device = None
    if device is None:
        manu = DI.manufacturer_display(rid.manufacturer)[:128]
        device = Device.objects.create(
            manufacturer=manu, model=rid.model, serial_number=rid.serial_number,
            station_name=rid.station_name, device_observer_uid=rid.device_observer_uid,
            software_versions=_s(info.software_versions)[:256], institution=_s(info.institution_name)[:256],
            department=_s(info.department)[:256], modality=modality[:8], last_seen=now,
            display_name=" ".join(x for x in (rid.station_name, manu, rid.model) if x)[:256],
        )
        if info.software_versions:
            DeviceSoftwareVersion.objects.create(device=device, software_versions=info.software_versions[:256])
        return _add_identifiers(device, idents, found)
    observer_uid = (info.device_observer_uid or device.device_observer_uid)[:128]
    software = (info.software_versions or device.software_versions)[:256]
    stale = device.last_seen is None or now - device.last_seen > timedelta(minutes=1)
    if stale or observer_uid != device.device_observer_uid or software != device.software_versions:
        device.last_seen, device.device_observer_uid, device.software_versions = now, observer_uid, software
        device.save(update_fields=["last_seen", "device_observer_uid", "software_versions"])
        if info.software_versions:
            DeviceSoftwareVersion.objects.bulk_create(
                [DeviceSoftwareVersion(device=device, software_versions=software)], ignore_conflicts=True
            )
    return _add_identifiers(device, idents, found)


def _add_identifiers(device: Device, idents, found) -> Device:
    missing = [DeviceIdentifier(device=device, kind=k, value=v) for k, v in idents if (k, v) not in found]
    if missing:
        DeviceIdentifier.objects.bulk_create(missing, ignore_conflicts=True)
    return device
