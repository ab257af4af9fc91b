import json
from datetime import date

from django.core.management.base import BaseCommand, CommandError

from dosereg import formatting as fmt
from dosereg.staff.selectors import staff_exposure, staff_lookup


class Command(BaseCommand):
    help = "A staff member's exposure: periods, totals per quantity, procedures with per-procedure doses, alerts."

    def add_arguments(self, parser):
        parser.add_argument("--staff", required=True, help="employee ID (or internal id)")
        parser.add_argument("--as-of", default=None, help="YYYY-MM-DD for year-to-date and rolling 5 years (default today)")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, staff, as_of=None, **options):
        member = staff_lookup(staff)
        if member is None:
            raise CommandError(f"no staff member with employee ID {staff!r}")
        try:
            day = date.fromisoformat(as_of) if as_of else None
        except ValueError:
            raise CommandError(f"--as-of {as_of!r} is not a date (YYYY-MM-DD)")
        data = staff_exposure(member, as_of=day)
        if options.get("json"):
            self.stdout.write(json.dumps(data, indent=2, ensure_ascii=False))
            return
        s = data["staff"]
        self.stdout.write(f"{s['name']} ({s['employee_id']}), {s['role']}, regime {data['limit_regime']}, as of {data['as_of']}")
        for label, block in (("year to date", data["totals"]["year_to_date"]), ("rolling 5 years", data["totals"]["rolling_5y"])):
            parts = ", ".join(f"{q} {fmt.number(v['msv'])} mSv" + (f" ({v['censored_readings']} M)" if v["censored_readings"] else "")
                              for q, v in block.items())
            self.stdout.write(f"  {label}: {parts or 'no readings'}")
        for q, block in data["periods"]["quarter"].items():
            rec = ", ".join(f"{k} {fmt.number(v['msv'])}" for k, v in block["dose_of_record"].items())
            self.stdout.write(f"  {q}: {rec or '-'}" + (f"; real-time Hp(10) {fmt.number(block['realtime_hp10_msv'])}" if block["realtime_hp10_msv"] else ""))
        self.stdout.write(f"  procedures: {len(data['procedures'])}")
        for p in data["procedures"][-20:]:
            doses = "; ".join(f"{d['kind']} {d['quantity']} {fmt.number(d['dose_usv'])} µSv" for d in p["doses"])
            self.stdout.write(f"    {p['study_datetime']} {p['accession_number'] or p['study_instance_uid']} {p['role']}: {doses or '-'}")
        for a in data["alerts"]:
            self.stdout.write(f"  ALERT {a['rule']} {a['level']} {a['period']}: {fmt.number(a['value_msv'])} mSv (threshold {fmt.number(a['threshold_msv'])} mSv) [{a['status']}]")
