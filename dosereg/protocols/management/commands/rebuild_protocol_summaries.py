"""Rebuild every protocol audit summary from the study table (after a bulk load or restore)."""
from __future__ import annotations

import time

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Rebuild all protocol audit summaries (monthly per device and study description) from the studies."

    def add_arguments(self, parser):
        parser.add_argument("--dirty-only", action="store_true",
                            help="only take new studies and rebuild dirty buckets (what the periodic task does)")

    def handle(self, *args, **opts):
        from dosereg.protocols.services import summaries_rebuild_all, summaries_refresh

        t0 = time.perf_counter()
        if opts["dirty_only"]:
            r = summaries_refresh(max_buckets=10 ** 9, max_new_studies=10 ** 12)
        else:
            r = summaries_rebuild_all()
        self.stdout.write(" ".join(f"{k}={v}" for k, v in r.items()) + f" in {time.perf_counter() - t0:.1f} s")
