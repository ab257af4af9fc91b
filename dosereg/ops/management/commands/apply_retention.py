import json

from django.core.management.base import BaseCommand

from dosereg.ops.retention import originals_apply_retention


class Command(BaseCommand):
    help = ("Delete stored originals of ingested objects older than RETENTION_ORIGINALS_DAYS (default: keep "
            "forever). Extracted dose data is kept; received and quarantined objects are never touched.")

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=None, help="override RETENTION_ORIGINALS_DAYS")
        parser.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
        parser.add_argument("--limit", type=int, default=None, help="at most N objects in this run")

    def handle(self, *args, days=None, dry_run=False, limit=None, **options):
        result = originals_apply_retention(days=days, dry_run=dry_run, limit=limit)
        self.stdout.write(json.dumps(result))
