"""python manage.py exposure_report --patient PATIENT_ID [--patient ...] [--issuer X] [--json] [--recompute]
python manage.py exposure_report --all [--recompute]

One patient's failure (a row that cannot be read, a recompute that raises) is logged, recorded in the ops failures
(admin: Task failures, "exposure report") and reported on stderr; the other patients are still reported, and the
command ends with a non-zero status naming how many failed."""
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
        parser.add_argument("--patient", action="append", default=[],
                            help="Patient ID as stored (the pseudonym when pseudonymised), or pk:<n>; may be repeated")
        parser.add_argument("--all", action="store_true", help="every patient record that is not merged into another")
        parser.add_argument("--issuer", default=None, help="Issuer of Patient ID (when the ID is not unique)")
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        parser.add_argument("--recompute", action="store_true", help="recompute windows and alerts first (inline)")

    def handle(self, *args, **opts):
        if isinstance(opts["patient"], str):  # call_command(..., patient="ID"): one patient, as before --patient repeated
            opts["patient"] = [opts["patient"]]
        if opts["all"] == bool(opts["patient"]):
            raise CommandError("give --patient (one or more) or --all")
        if opts["all"]:
            pks = iter(list(Patient.objects.filter(merged_into__isnull=True).order_by("pk").values_list("pk", flat=True)))
        else:
            pks = iter([self._find(ident, opts["issuer"]).pk for ident in opts["patient"]])
        single = len(opts["patient"]) == 1 and not opts["all"]
        reports, failed, seen = [], 0, 0
        for pk in pks:
            seen += 1
            try:
                report = self._report(pk, opts["recompute"])
            except Exception as exc:  # one poisoned patient must not stop the others: recorded, and on we go
                from dosereg.ops.failures import step_failure_record

                failed += 1
                step_failure_record("exposure report", pk, exc)
                self.stderr.write(f"patient record {pk}: could not be reported ({type(exc).__name__}: {exc})")
                continue
            if opts["json"]:
                reports.append(fmt.machine_tree(report))
            else:
                self._write(report)
        if opts["json"]:
            body = reports[0] if single and reports else reports
            self.stdout.write(json.dumps(body, indent=2, ensure_ascii=False, default=str))
        if failed:
            raise CommandError(f"{failed} of {seen} patients could not be reported (recorded in the ops failures)")

    @staticmethod
    def _report(pk: int, recompute: bool) -> dict:
        patient = Patient.objects.get(pk=pk)
        if recompute:
            from dosereg.exposure.recompute import patient_exposure_recompute

            patient_exposure_recompute(patient_id=patient.pk)
        return patient_exposure_report(patient=patient)

    def _write(self, report: dict) -> None:
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
