import json
from collections import Counter
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from dicom_listener.spool import Spool
from dosereg.registry.models import DoseObject
from dosereg.pipeline.flow import file_import
from dosereg.registry.receiving import DUPLICATE


class Command(BaseCommand):
    help = "Import DICOM files and folders (recursive) through the ingest pipeline."

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+")
        parser.add_argument("--queue", action="store_true", help="hand objects to the Celery workers instead of ingesting here")
        parser.add_argument("--json", action="store_true", help="print the summary as JSON")

    def handle(self, *args, paths, queue=False, **options):
        files: list[Path] = []
        for p in map(Path, paths):
            if p.is_dir():
                files.extend(sorted(f for f in p.rglob("*") if f.is_file() and not f.name.endswith((".tsv", ".md", ".txt"))))
            elif p.is_file():
                files.append(p)
            else:
                raise CommandError(f"no such file or folder: {p}")
        spool = Spool(settings.SPOOL_DIR, min_free_bytes=settings.SPOOL_MIN_FREE_BYTES)
        counts: Counter[str] = Counter()
        quarantined: list[dict] = []
        for f in tqdm(files, unit="obj", disable=options.get("json") or len(files) < 2, file=self.stderr):
            obj, outcome = file_import(path=f, spool=spool, inline=not queue)
            if outcome == DUPLICATE:
                counts["duplicates"] += 1
            elif obj.status == DoseObject.STATUS_QUARANTINED:
                counts["quarantined"] += 1
                quarantined.append({"file": str(f), "reason": obj.quarantine_reason})
            elif obj.status == DoseObject.STATUS_INGESTED:
                counts["imported"] += 1
            else:
                counts["queued"] += 1
        summary = {"files": len(files), "imported": counts["imported"], "duplicates": counts["duplicates"],
                   "queued": counts["queued"], "quarantined": counts["quarantined"], "quarantine": quarantined}
        if options.get("json"):
            self.stdout.write(json.dumps(summary, indent=2))
            return
        self.stdout.write(
            f"{summary['files']} files: {summary['imported']} imported, {summary['duplicates']} duplicates, "
            f"{summary['queued']} queued, {summary['quarantined']} quarantined"
        )
        for q in quarantined:
            self.stdout.write(f"  quarantined {q['file']}: {q['reason']}")
