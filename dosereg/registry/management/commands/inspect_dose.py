import json
import sys

from django.conf import settings
from django.core.management.base import BaseCommand

from dosereg.rdsr import ExtractionError, extract_file, nm
from dosereg.rdsr.inspect import inspect_dict


class Command(BaseCommand):
    help = "Print the dose content of DICOM files as JSON, without touching the database."

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+")

    def handle(self, *args, files, **options):
        out, failed = [], False
        for f in files:
            try:
                doc = extract_file(f)
                info = inspect_dict(doc)
                # NM/PET: the population-average effective-dose estimate of each administration (versioned table,
                # setting NM_EFFECTIVE_DOSE_COEFFICIENTS), or why there is none
                for a, row in zip(doc.radiopharmaceuticals, info["radiopharmaceuticals"]):
                    e_msv, detail = nm.effective_dose(a, settings.NM_EFFECTIVE_DOSE_COEFFICIENTS, doc.patient.age_years)
                    row["effective_dose_msv"], row["effective_dose_detail"] = e_msv, detail
                out.append(info)
            except ExtractionError as exc:
                out.append({"file": f, "error": str(exc)})
                failed = True
            except OSError as exc:
                out.append({"file": f, "error": f"cannot read file: {exc}"})
                failed = True
        self.stdout.write(json.dumps(out, indent=2, default=str))
        if failed:
            sys.exit(1)
