import json

from django.core.management.base import BaseCommand

from dosereg.ops.transfer import registry_export


class Command(BaseCommand):
    help = ("Export the whole dose registry (patients, devices, studies, dose objects, planes, events, "
            "participants, MR exams) as JSON lines with natural keys; .gz compresses.")

    def add_arguments(self, parser):
        parser.add_argument("--out", required=True, help="FILE.jsonl or FILE.jsonl.gz")

    def handle(self, *args, out, **options):
        counts = registry_export(out)
        self.stdout.write(json.dumps({"file": out, "records": counts}))
