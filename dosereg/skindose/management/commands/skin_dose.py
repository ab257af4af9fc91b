"""python manage.py skin_dose FILE [--json] [--phantom plane|cylinder|human] [--k-tab 0.8] [--map]

Peak skin dose from an RDSR file, computed without storing anything (dosereg's parser, PySkinDose's method)."""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from dosereg.rdsr.extract import ExtractionError, extract_file
from dosereg.skindose.engine import PHANTOMS, RoomSettings, compute, events_from_document


class Command(BaseCommand):
    help = "Estimate the peak skin dose of a fluoroscopy RDSR file (nothing is stored)."

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+")
        parser.add_argument("--json", action="store_true", help="JSON output (one object per file)")
        parser.add_argument("--phantom", choices=PHANTOMS, default="plane")
        parser.add_argument("--k-tab", type=float, default=None, help="table and pad transmission (default 0.8, an estimate)")
        parser.add_argument("--map", action="store_true", help="include the skin-dose map (cells and dose) in the JSON")

    def handle(self, *args, **opts):
        room = RoomSettings(phantom=opts["phantom"])
        if opts["k_tab"] is not None:
            if not 0 < opts["k_tab"] <= 1:
                raise CommandError("--k-tab must be in (0, 1]")
            room.table_pad_transmission, room.transmission_source = opts["k_tab"], "given on the command line"
        out = []
        for path in opts["files"]:
            try:
                doc = extract_file(path)
            except (ExtractionError, OSError) as exc:
                raise CommandError(f"{path}: {exc}") from None
            res = compute(events_from_document(doc), manufacturer=doc.device.manufacturer, model=doc.device.model,
                          room=room, with_map=opts["map"])
            d = {"file": str(path), **res.as_dict(with_map=opts["map"])}
            out.append(d)
            if not opts["json"]:
                if res.computable:
                    self.stdout.write(f"{path}: PSD {res.psd_gy:.3g} Gy at {res.psd_location['description']} "
                                      f"({len(res.events_used)} events used, {len(res.events_skipped)} skipped; {res.phantom} phantom)")
                else:
                    kar = f"{res.kar_total_gy:.3g} Gy" if res.kar_total_gy is not None else "none"
                    self.stdout.write(f"{path}: PSD not computable: {res.not_computable_reason}. "
                                      f"Ka,r-based estimate (upper bound, not a skin dose): {kar}")
        if opts["json"]:
            self.stdout.write(json.dumps(out if len(out) > 1 else out[0], indent=2))
