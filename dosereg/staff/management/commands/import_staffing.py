import json

from django.core.management.base import BaseCommand, CommandError

from dosereg.staff.staffing import StaffingImportError, import_staffing


class Command(BaseCommand):
    help = (
        "Import a theatre/procedure staffing list (CSV): role, staff_name and/or employee_id, and "
        "study_instance_uid, accession_number or room+start+end. Unknown names are queued for resolution."
    )

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--tz", default=None, help="time zone of start/end without an offset (default TIME_ZONE)")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, file, tz=None, **options):
        try:
            result = import_staffing(file, tz_name=tz)
        except FileNotFoundError:
            raise CommandError(f"no such file: {file}")
        except StaffingImportError as exc:
            raise CommandError(str(exc))
        if options.get("json"):
            self.stdout.write(json.dumps(result.as_dict(), indent=2))
        elif result.status == "already_imported":
            self.stdout.write(f"{file}: already imported (import {result.import_id}); nothing changed")
        else:
            self.stdout.write(f"{file}: imported ({', '.join(f'{k} {v}' for k, v in result.counts.items())})")
