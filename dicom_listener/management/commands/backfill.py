import json

from django.core.management.base import BaseCommand, CommandError

from dicom_listener.backfill import Backfill, BackfillError, parse_date, parse_rate, parse_remote


class Command(BaseCommand):
    help = ("Backfill dose objects from a PACS: C-FIND (study, series, image level) for dose SRs "
            "(image headers for studies without one), retrieve by C-GET or C-MOVE, ingest; "
            "resumable (re-run the same command), rate-limited, duplicates skipped.")

    def add_arguments(self, parser):
        parser.add_argument("--remote", required=True, help="the PACS: AE@host:port")
        parser.add_argument("--from", dest="date_from", required=True, help="first study date, YYYY-MM-DD")
        parser.add_argument("--to", dest="date_to", required=True, help="last study date, YYYY-MM-DD (inclusive)")
        parser.add_argument("--calling-ae", default="BACKFILL", help="our AE title towards the PACS (default BACKFILL)")
        parser.add_argument("--method", choices=["get", "move"], default="get",
                            help="C-GET (received here) or C-MOVE (sent by the PACS to --move-destination)")
        parser.add_argument("--move-destination", default=None,
                            help="AE title the PACS sends to for C-MOVE (default: our listener's DICOM_AE_TITLE)")
        parser.add_argument("--rate", default=None, help="at most N DIMSE requests per second: 5, 5/s, 120/m")
        parser.add_argument("--modality", action="append", default=[],
                            help="only studies with this modality (ModalitiesInStudy); repeat or comma-separate")
        parser.add_argument("--no-images", action="store_true",
                            help="dose SRs only: do not fetch image headers for studies without a dose SR")
        parser.add_argument("--chunk-days", type=int, default=0,
                            help="query the date range in chunks of N days (resume granularity; default one query)")
        parser.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds")
        parser.add_argument("--json", action="store_true", help="print the summary as JSON")
        parser.add_argument("--quiet", action="store_true", help="no per-instance progress")

    def handle(self, *args, **o):
        try:
            remote = parse_remote(o["remote"])
            modalities = [m for v in o["modality"] for m in v.split(",") if m.strip()]
            job = Backfill(
                remote, parse_date(o["date_from"]), parse_date(o["date_to"]), calling_ae=o["calling_ae"],
                method=o["method"], move_destination=o["move_destination"], rate=parse_rate(o["rate"]),
                modalities=modalities, include_images=not o["no_images"], chunk_days=o["chunk_days"] or None,
                timeout=o["timeout"],
                progress=(lambda msg: None) if (o["quiet"] or o["json"]) else (lambda msg: self.stderr.write(msg)),
            )
            summary = job.run()
        except BackfillError as exc:
            raise CommandError(str(exc)) from exc
        if o["json"]:
            self.stdout.write(json.dumps({**summary.as_dict(), "failures": summary.failures}))
        else:
            self.stdout.write(
                f"backfill run {summary.run_id}: {summary.found} found, {summary.already_present} already present, "
                f"{summary.retrieved} retrieved, {summary.failed} failed"
            )
            for f in summary.failures:
                self.stdout.write(f"  failed {f['sop_instance_uid']}: {f['error']}")
        if summary.failed:
            raise CommandError(f"{summary.failed} instances could not be retrieved; run the same command again to retry")
