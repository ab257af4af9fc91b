import json
import sys

from django.core.management.base import BaseCommand

from dosereg.rdsr import ExtractionError, extract_file
from dosereg.rdsr.inspect import inspect_dict


class Command(BaseCommand):
    help = "Print the dose content of DICOM files as JSON, without touching the database."

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+")

    def handle(self, *args, files, **options):
        out, failed = [], False
        for f in files:
            try:
                out.append(inspect_dict(extract_file(f)))
            except ExtractionError as exc:
                out.append({"file": f, "error": str(exc)})
                failed = True
            except OSError as exc:
                out.append({"file": f, "error": f"cannot read file: {exc}"})
                failed = True
        self.stdout.write(json.dumps(out, indent=2, default=str))
        if failed:
            sys.exit(1)
