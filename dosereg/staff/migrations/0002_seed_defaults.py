"""Seed the staff-exposure defaults (version 1 of every setting), each with its source and verification mark.

Marks as in /work/shared/reference/dose-standards.md: ✔ checked against a primary source, ◐ well-established
value not re-read in full, ⚠ uncertain / local choice. All are site-editable (a change is a new version).
Values are frozen here on purpose: later code changes never rewrite what was seeded.
"""
from django.db import migrations

REF = "dose-standards.md §6"
ICRP = "ICRP Publication 103 (2007) and ICRP 118 (2011)"
NRC = "US NRC 10 CFR 20.1201 / 20.1208"
NRC_ALARA = (
    "NRC model-program style ALARA investigation level (NUREG-1556 Vol. 9 appendix, not re-read; equals "
    "{pct} % of one quarter of the 10 CFR 20.1201 annual limit). Hospitals set their own levels. " + REF + ".1"
)

SETTINGS = [
    # key, regime, value, unit, citation, verification, note
    # --- limits ---------------------------------------------------------------------------------------------
    ("limit.effective.annual", "icrp", 20.0, "mSv/y", f"{ICRP}: 20 mSv/y averaged over defined 5-y periods, ≤ 50 mSv in any one year. {REF}.1", "◐",
     "alerts against 20 mSv in a calendar year (conservative reading of the 5-year average)"),
    ("limit.effective.single_year_max", "icrp", 50.0, "mSv/y", f"{ICRP}: no single year above 50 mSv. {REF}.1", "◐", ""),
    ("limit.effective.five_year", "icrp", 100.0, "mSv/5y", f"{ICRP}: 100 mSv in 5 years. {REF}.1", "◐", ""),
    ("limit.lens.annual", "icrp", 20.0, "mSv/y", f"ICRP 118 (2011) eye lens: 20 mSv/y averaged over 5 y, no year > 50 mSv (PMC review). {REF}.1", "✔", ""),
    ("limit.lens.five_year", "icrp", 100.0, "mSv/5y", f"ICRP 118 (2011) eye lens: 100 mSv in 5 years. {REF}.1", "◐", ""),
    ("limit.extremity.annual", "icrp", 500.0, "mSv/y", f"{ICRP}: skin/extremities 500 mSv/y. {REF}.1", "◐", ""),
    ("limit.effective.annual", "nrc", 50.0, "mSv/y", f"{NRC}: TEDE 50 mSv (5 rem) per year. {REF}.1", "◐", ""),
    ("limit.lens.annual", "nrc", 150.0, "mSv/y", f"{NRC}: lens dose equivalent 150 mSv (15 rem) per year (PMC). {REF}.1", "✔", ""),
    ("limit.extremity.annual", "nrc", 500.0, "mSv/y", f"{NRC}: shallow dose equivalent to skin/extremity 500 mSv per year. {REF}.1", "◐", ""),
    ("limit.approach_fraction", "", 0.8, "fraction", "Local policy: warn at 80 % of an annual limit (site decision, no published source).", "⚠", ""),
    # --- ALARA investigation levels per calendar quarter ------------------------------------------------------
    ("investigation.effective.I", "", 1.25, "mSv/quarter", NRC_ALARA.format(pct=10), "◐", "whole body; applied to the effective dose of record"),
    ("investigation.effective.II", "", 3.75, "mSv/quarter", NRC_ALARA.format(pct=30), "◐", "whole body"),
    ("investigation.lens.I", "", 3.75, "mSv/quarter", NRC_ALARA.format(pct=10), "◐", ""),
    ("investigation.lens.II", "", 11.25, "mSv/quarter", NRC_ALARA.format(pct=30), "◐", ""),
    ("investigation.extremity.I", "", 12.5, "mSv/quarter", NRC_ALARA.format(pct=10), "◐", ""),
    ("investigation.extremity.II", "", 37.5, "mSv/quarter", NRC_ALARA.format(pct=30), "◐", ""),
    # --- declared pregnancy -----------------------------------------------------------------------------------
    ("pregnancy.monthly", "", 0.5, "mSv/month",
     f"US NRC Regulatory Guide 8.13 (avoid monthly spikes, about 0.5 mSv/month) and NCRP (0.5 mSv/month once pregnancy is known). {REF}.1",
     "◐", "compared with under-apron Hp(10) when worn, else the effective dose"),
    ("pregnancy.declared_total", "icrp", 1.0, "mSv", f"{ICRP}: about 1 mSv to the embryo/fetus for the rest of the pregnancy. {REF}.1", "◐", ""),
    ("pregnancy.declared_total", "nrc", 5.0, "mSv", f"{NRC} (20.1208): 5 mSv (0.5 rem) over the gestation of a declared pregnant woman. {REF}.1", "◐", ""),
    # --- per procedure ----------------------------------------------------------------------------------------
    ("procedure.high_dose_hp10", "", 0.1, "mSv",
     "Local choice: 100 µSv Hp(10) over the apron in one procedure (real-time dosimeter). No published standard; "
     "set by the physicist.", "⚠", ""),
    # --- dosimetry ----------------------------------------------------------------------------------------------
    ("dosimetry.minimum_reportable.hp10", "", 0.01, "mSv", f"Landauer Luxel+ minimum reportable dose 1 mrem (0.01 mSv), vendor FAQ. {REF}.3", "✔", ""),
    ("dosimetry.minimum_reportable.hp3", "", 0.01, "mSv", f"Landauer Luxel+ minimum reportable dose 1 mrem (0.01 mSv), vendor FAQ. {REF}.3", "✔", ""),
    ("dosimetry.minimum_reportable.hp007", "", 0.01, "mSv",
     f"Landauer Luxel+ minimum reportable dose 1 mrem (0.01 mSv), vendor FAQ; ring dosimeters may have a higher threshold. {REF}.3",
     "⚠", "set the ring dosimeter's own threshold"),
    ("effective.algorithm", "", "niklason", "",
     f"Niklason et al. 1993, E = H_W + 0.06 (H_N - H_W): judged closest to phantom truth in one comparison (Wang et al., "
     f"Chin J Radiol Med Prot 2016;36(12):935-939); coefficients ◐. One dosimeter: collar Hp(10)/10 (Martin, J Radiol Prot 2013 ✔) "
     f"or Hp(10) under the apron. {REF}.2", "◐", "one of martin_collar, under_apron, ncrp122, niklason, webster"),
    ("realtime.window_margin_before_s", "", 60, "s", "Local choice: allowance for clock offset between dosimeter and modality.", "⚠", ""),
    ("realtime.window_margin_after_s", "", 60, "s", "Local choice: allowance for clock offset between dosimeter and modality.", "⚠", ""),
    ("realtime.fallback_half_window_s", "", 1800, "s",
     "Local choice: without event times a procedure is Study DateTime ± 30 min.", "⚠", ""),
]

ANTIC = (
    "Antic et al., Radiat Prot Dosimetry 2013 (interventional cardiology): eye-lens Hp(3) per KAP. Planning-level estimate; "
    "replace with per-room factors calibrated by the physicist. dose-standards.md §6.4"
)
SCATTER = [
    # role, quantity, µSv per Gy·cm²
    ("first_operator", "hp3", 0.94),
    ("second_operator", "hp3", 0.33),
    ("nurse", "hp3", 0.33),
    ("radiographer", "hp3", 0.16),
]


def seed(apps, schema_editor):
    StaffSetting = apps.get_model("staff", "StaffSetting")
    ScatterFactor = apps.get_model("staff", "ScatterFactor")
    Site = apps.get_model("staff", "Site")
    Site.objects.get_or_create(name="default", defaults={"limit_regime": "icrp"})
    for key, regime, value, unit, citation, mark, note in SETTINGS:
        StaffSetting.objects.get_or_create(
            key=key, regime=regime, site=None, version=1,
            defaults={"value": value, "unit": unit, "citation": citation, "verification": mark, "note": note},
        )
    for role, quantity, factor in SCATTER:
        ScatterFactor.objects.get_or_create(
            device=None, role=role, quantity=quantity, version=1,
            defaults={"factor_usv_per_gy_cm2": factor, "citation": ANTIC, "verification": "✔"},
        )


def unseed(apps, schema_editor):
    apps.get_model("staff", "StaffSetting").objects.filter(version=1, site__isnull=True).delete()
    apps.get_model("staff", "ScatterFactor").objects.filter(version=1, device__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("staff", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
