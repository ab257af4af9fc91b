import json

from django.core.management.base import BaseCommand, CommandError

from dosereg.staff.dosimetry import import_dosimetry
from dosereg.staff.dosimetry.common import DosimetryImportError


class Command(BaseCommand):
    help = (
        "Import a dosimetry file. badge_csv: badge_id, wear_start, wear_end, hp10_msv, hp3_msv, hp007_msv "
        "[position, employee_id, name] ('M' = below minimum reportable dose, 'Unused'). realtime_csv: badge_id, timestamp, "
        "dose_usv or cumulative_usv [dose_rate_usv_h, employee_id]. All or nothing; re-importing a file changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--format", required=True, choices=["badge_csv", "realtime_csv"], dest="fmt")
        parser.add_argument("--tz", default=None, help="time zone of timestamps without an offset (default TIME_ZONE)")
        parser.add_argument("--utc-offset", default=None, help="fixed offset such as +01:00 for devices that log without DST")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, file, fmt, tz=None, utc_offset=None, **options):
        try:
            result = import_dosimetry(file, fmt=fmt, tz_name=tz, utc_offset=utc_offset)
        except FileNotFoundError:
            raise CommandError(f"no such file: {file}")
        except DosimetryImportError as exc:
            raise CommandError(str(exc))
        if options.get("json"):
            self.stdout.write(json.dumps(result.as_dict(), indent=2))
            return
        if result.status == "already_imported":
            self.stdout.write(f"{file}: already imported (import {result.import_id}); nothing changed")
            return
        self.stdout.write(f"{file}: imported ({', '.join(f'{k} {v}' for k, v in result.counts.items())})")
        for w in result.warnings[:50]:
            self.stdout.write(f"  warning: {w}")
