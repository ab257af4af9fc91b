"""Read-side queries for the registry."""
from __future__ import annotations

from django.db.models import Count, Q

from .models import Device, DoseObject, IrradiationEvent, Patient, Study


def registry_stats() -> dict[str, int]:
    objs = DoseObject.objects.aggregate(
        received=Count("id"),
        ingested=Count("id", filter=Q(status=DoseObject.STATUS_INGESTED)),
        quarantined=Count("id", filter=Q(status=DoseObject.STATUS_QUARANTINED)),
    )
    return {
        "objects_received": objs["received"],
        "objects_ingested": objs["ingested"],
        "objects_quarantined": objs["quarantined"],
        "patients": Patient.objects.filter(merged_into__isnull=True).count(),
        "studies": Study.objects.count(),
        "irradiation_events": IrradiationEvent.objects.count(),
        "devices": Device.objects.count(),
    }
