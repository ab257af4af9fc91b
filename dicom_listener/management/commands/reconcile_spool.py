"""Compare the spool with the registry: every stored object must be registered (received, ingested or quarantined).

    python manage.py reconcile_spool [--json] [--grace SECONDS] [--register] [--spool DIR]

Exit status 1 when an object older than the grace period is in neither registry nor quarantine.
``--register`` registers such objects now (as the sweeper does, without its 7-day window).
"""
from __future__ import annotations

import json
import sys

from django.conf import settings
from django.core.management.base import BaseCommand

from dicom_listener.reconcile import spool_reconcile
from dicom_listener.spool import Spool


class Command(BaseCommand):
    help = "Report spooled objects that are in neither registry nor quarantine (exit 1 if any)."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print the report as JSON")
        parser.add_argument("--grace", type=float, default=60.0,
                            help="files younger than this (s) may still be being registered: counted as pending")
        parser.add_argument("--register", action="store_true", help="register the unregistered objects now")
        parser.add_argument("--spool", default=None, help=f"spool directory (default SPOOL_DIR, {settings.SPOOL_DIR})")

    def handle(self, *args, json: bool = False, grace: float = 60.0, register: bool = False, spool=None, **options):
        report = spool_reconcile(spool=Spool(spool or settings.SPOOL_DIR), grace_s=grace, register=register)
        if json:
            self.stdout.write(_dumps(report))
        else:
            self.stdout.write(f"spool {report['spool']}: {report['files']} objects, {report['unregistered']} in neither "
                              f"registry nor quarantine, {report['pending']} pending (younger than {grace:g} s), "
                              f"{report['registered_now']} registered now, {report['partial_transfers']} partial transfers")
            for path in report["unregistered_paths"]:
                self.stdout.write(f"  unregistered: {path}")
        if not report["ok"]:
            sys.exit(1)


def _dumps(report: dict) -> str:
    return json.dumps(report, sort_keys=True)
