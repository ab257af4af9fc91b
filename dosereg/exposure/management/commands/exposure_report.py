"""python manage.py exposure_report --patient PATIENT_ID [--issuer X] [--json] [--recompute]"""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from dosereg import formatting as fmt
from dosereg.exposure.selectors import patient_exposure_report
from dosereg.registry.models import Patient


def _doses(row: dict, kar_field: str) -> str:
    """"KAP 45.6 Gy·cm²  Ka,r 1.23 Gy  Fluoro time 3:05 min:s  DLP —" (dosereg.formatting)."""
    fields = ("kap_gy_cm2", kar_field, "fluoro_time_s", "dlp_mgy_cm")
    return "  ".join(fmt.dose(f, row.get(f), missing="—") for f in fields)


class Command(BaseCommand):
    help = "A patient's studies, windowed totals per quantity, and open/closed alerts."

    def add_arguments(self, parser):
        parser.add_argument("--patient", required=True, help="Patient ID as stored (the pseudonym when pseudonymised), or pk:<n>")
        parser.add_argument("--issuer", default=None, help="Issuer of Patient ID (when the ID is not unique)")
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        parser.add_argument("--recompute", action="store_true", help="recompute windows and alerts first (inline)")

    def handle(self, *args, **opts):
        patient = self._find(opts["patient"], opts["issuer"])
        if opts["recompute"]:
            from dosereg.exposure.services import patient_exposure_recompute

            patient_exposure_recompute(patient_id=patient.pk)
        report = patient_exposure_report(patient=patient)
        if opts["json"]:
            self.stdout.write(json.dumps(fmt.machine_tree(report), indent=2, ensure_ascii=False, default=str))
            return
        p = report["patient"]
        self.stdout.write(f"Patient {p['patient_id']} (record {p['id']}){' merged: ' + str(p['merged_records']) if p['merged_records'] else ''}")
        self.stdout.write(f"Studies ({len(report['studies'])}):")
        for s in report["studies"]:
            self.stdout.write(f"  {s['datetime'] or 'undated':32} {s['modality']:3} {_doses(s, 'kar_max_plane_gy')}  "
                              f"E≈{fmt.with_unit('effective_dose_msv', s['effective_dose_msv'])}")
        self.stdout.write(f"Windows ({report['window_definition']}), ending now:")
        for w in report["windows"]:
            if w["anchor"] == "now":
                self.stdout.write(f"  {w['window_days']:4} d: {w['procedure_count']} procedures, {_doses(w, 'kar_max_gy')} "
                                  f"(Ka,r: largest reference point and plane), "
                                  f"E≈{fmt.with_unit('effective_dose_msv', w['effective_dose_msv'])} ({w['effective_dose_label']})")
        for state in ("open", "closed"):
            self.stdout.write(f"Alerts {state} ({len(report['alerts'][state])}):")
            for a in report["alerts"][state]:
                self.stdout.write(f"  #{a['id']} [{a['status']}/{a['severity']}] {a['title']} — {a['verification']}")

    def _find(self, ident: str, issuer: str | None) -> Patient:
        if ident.startswith("pk:"):
            try:
                return Patient.objects.get(pk=int(ident[3:]))
            except (ValueError, Patient.DoesNotExist) as exc:
                raise CommandError(f"no patient {ident}") from exc
        qs = Patient.objects.filter(patient_id=ident)
        if issuer is not None:
            qs = qs.filter(issuer=issuer)
        found = list(qs[:2])
        if not found:
            raise CommandError(f"no patient with ID {ident!r}")
        if len(found) > 1:
            raise CommandError(f"patient ID {ident!r} exists for several issuers; pass --issuer")
        return found[0]
