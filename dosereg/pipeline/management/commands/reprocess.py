from datetime import datetime

from django.core.management.base import BaseCommand
from django.utils import timezone

from dosereg.registry.models import DoseObject
from dosereg.pipeline.flow import objects_reprocess


class Command(BaseCommand):
    help = "Re-extract stored originals (all, by device, by date range, or the quarantine)."

    def add_arguments(self, parser):
        parser.add_argument("--device", type=int, help="device id")
        parser.add_argument("--from", dest="date_from", help="received on or after YYYY-MM-DD")
        parser.add_argument("--to", dest="date_to", help="received before YYYY-MM-DD")
        parser.add_argument("--quarantined", action="store_true", help="only quarantined objects")
        parser.add_argument("--queue", action="store_true", help="hand to the Celery workers instead of running here")

    def handle(self, *args, **o):
        qs = DoseObject.objects.all()
        if o["device"]:
            qs = qs.filter(device_id=o["device"])
        if o["date_from"]:
            qs = qs.filter(received_at__gte=timezone.make_aware(datetime.fromisoformat(o["date_from"])))
        if o["date_to"]:
            qs = qs.filter(received_at__lt=timezone.make_aware(datetime.fromisoformat(o["date_to"])))
        if o["quarantined"]:
            qs = qs.filter(status=DoseObject.STATUS_QUARANTINED)
        n = objects_reprocess(queryset=qs, inline=not o["queue"])
        self.stdout.write(f"reprocessed {n} objects")
