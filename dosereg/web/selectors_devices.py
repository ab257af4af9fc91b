"""What the Devices pages read: every device at the user's sites with its identity, the identities its objects
arrived with, software versions, last object and usual gap between objects. A fixed number of queries
whatever the number of devices (one per kind of row)."""
from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Count, F, Window
from django.db.models.functions import RowNumber

from dosereg.access.scope import EVERY_SITE, SiteScope
from dosereg.registry.models import Device, DeviceIdentity, DeviceSoftwareVersion, DoseObject, Study

# the usual gap is the median time between a device's consecutive objects, over its latest GAP_WINDOW objects
GAP_WINDOW = 100


@dataclass
class DeviceRow:
    device: Device
    n_studies: int = 0
    last_object: datetime | None = None
    usual_gap_s: float | None = None
    software: list[str] = field(default_factory=list)
    identities: list[DeviceIdentity] = field(default_factory=list)
    identity_studies: dict[int, int] = field(default_factory=dict)  # identity pk -> its studies on this device
    merged_from: list[Device] = field(default_factory=list)


def _devices(scope: SiteScope):
    return Device.objects.filter(merged_into__isnull=True).filter(scope.device_q("pk"))


def device_rows(*, scope: SiteScope = EVERY_SITE, device_id: int | None = None) -> list[DeviceRow]:
    """Every (unmerged) device at the sites, or the one ``device_id``; ordered by site, then name."""
    if not scope.unrestricted and not scope.sites:
        return []
    qs = _devices(scope)
    if device_id is not None:
        qs = qs.filter(pk=device_id)
    devices = list(qs.order_by("institution", "display_name", "pk"))
    ids = [d.pk for d in devices]
    rows = {d.pk: DeviceRow(d) for d in devices}
    if not ids:
        return []
    for dev, n in Study.objects.filter(device_id__in=ids).values_list("device_id").annotate(n=Count("pk")):
        rows[dev].n_studies = n
    for dev, sw in (DeviceSoftwareVersion.objects.filter(device_id__in=ids)
                    .order_by("device_id", "-first_seen", "-pk").values_list("device_id", "software_versions")):
        rows[dev].software.append(sw)
    for ident in DeviceIdentity.objects.filter(device_id__in=ids).order_by("device_id", "first_seen", "pk"):
        rows[ident.device_id].identities.append(ident)
    for dev, ident, n in (Study.objects.filter(device_id__in=ids, received_identity__isnull=False)
                          .values_list("device_id", "received_identity_id").annotate(n=Count("pk"))):
        rows[dev].identity_studies[ident] = n
    for d in Device.objects.filter(merged_into_id__in=ids).order_by("pk"):
        rows[d.merged_into_id].merged_from.append(d)  # type: ignore[index]
    latest = (DoseObject.objects.filter(device_id__in=ids)
              .annotate(rn=Window(RowNumber(), partition_by=[F("device_id")], order_by=F("received_at").desc()))
              .filter(rn__lte=GAP_WINDOW + 1).values_list("device_id", "received_at"))
    times: dict[int, list[datetime]] = defaultdict(list)
    for dev, at in latest:
        times[dev].append(at)
    for dev, ts in times.items():
        ts.sort()
        rows[dev].last_object = ts[-1]
        gaps = [(b - a).total_seconds() for a, b in zip(ts, ts[1:])]
        if gaps:
            rows[dev].usual_gap_s = statistics.median(gaps)
    return [rows[pk] for pk in ids]


def device_for_user(*, scope: SiteScope, device_id: int) -> Device | None:
    """The device (unmerged or merged) if it is at the user's sites."""
    return Device.objects.filter(scope.device_q("pk")).filter(pk=device_id).first()


def merge_targets(*, scope: SiteScope, exclude_id: int) -> list[Device]:
    return list(_devices(scope).exclude(pk=exclude_id).order_by("institution", "display_name", "pk"))


