"""Default rule set and effective-dose factors (dose-standards.md §4, §5, §7, §9).

Imported by the data migration; values are frozen there as of this version —
later changes go into a new RuleSet version, never by editing rows in place.
"""

NCRP168 = ("NCRP Report 168 (2010); SIR/CIRSE guidelines, Stecker et al., JVIR 2009;20:S263–S273; "
           "AAPM MPPG 12.a (2022) — dose-standards.md §4.1")
NCRP168_UNREAD = NCRP168 + ". ◐: value could not be re-read in NCRP 168/Stecker 2009; a physicist should sign it off."
AAPM_CT = ("AAPM Dose Check Guidelines v1.0, 27 Apr 2011 (CTDIvol notification values); NEMA XR 25 — dose-standards.md §4.3")
CUMULATIVE = ("Rolling 12-week window: OpenREM default (✔ docs); adding prior doses for repeat procedures: NCRP 168/SIR (◐) — "
              "dose-standards.md §4.1. Fires only when the window holds ≥ 2 procedures (single procedures: per-study rules).")

FGI = "RF,XA"


def r(key, title, quantity, level_kind, value=None, unit="", *, step=None, window=None, modalities="", severity="normal",
      verification="◐", source=NCRP168_UNREAD, follow_up=None, protocol_class="", phantom="", min_age=None, max_age=None,
      digest=False, params=None, enabled=True, min_procedures=2):
    return dict(key=key, title=title, quantity=quantity, level_kind=level_kind, threshold_value=value, threshold_unit=unit,
                step_value=step, window_days=window, scope_modalities=modalities, severity=severity, verification=verification,
                source=source, follow_up_days=follow_up, protocol_class=protocol_class, phantom=phantom, min_age_years=min_age,
                max_age_years=max_age, digest=digest, params=params or {}, enabled=enabled, min_procedures=min_procedures)


DEFAULT_RULES = [
    # fluoroscopically guided procedures, per study
    r("fgi-kar-first", "Ka,r first notification", "kar_gy", "first", 3, "Gy", modalities=FGI, verification="✔", source=NCRP168),
    r("fgi-kar-subsequent", "Ka,r subsequent notification", "kar_gy", "subsequent", 3, "Gy", step=1, modalities=FGI,
      verification="✔", source=NCRP168),
    r("fgi-kar-srdl", "Ka,r substantial radiation dose level", "kar_gy", "srdl", 5, "Gy", modalities=FGI, severity="high",
      verification="✔", source=NCRP168 + "; follow-up at 2–4 weeks (◐)", follow_up=28),
    r("fgi-kap-first", "KAP first notification", "kap_gy_cm2", "first", 300, "Gy·cm²", modalities=FGI),
    r("fgi-kap-subsequent", "KAP subsequent notification", "kap_gy_cm2", "subsequent", 300, "Gy·cm²", step=100, modalities=FGI),
    r("fgi-kap-srdl", "KAP substantial radiation dose level", "kap_gy_cm2", "srdl", 500, "Gy·cm²", modalities=FGI, severity="high",
      follow_up=28, source=NCRP168_UNREAD + " Assumes a 100 cm² skin field (scale for field size); AAPM MPPG 12.a gives no KAP level (✔)."),
    r("fgi-time-first", "Fluoroscopy time first notification", "fluoro_time_s", "first", 30, "min", modalities=FGI),
    r("fgi-time-subsequent", "Fluoroscopy time subsequent notification", "fluoro_time_s", "subsequent", 30, "min", step=15, modalities=FGI),
    r("fgi-time-srdl", "Fluoroscopy time substantial radiation dose level", "fluoro_time_s", "srdl", 60, "min", modalities=FGI,
      severity="high", follow_up=28, source=NCRP168_UNREAD + " Fluoroscopy time is the weakest indicator."),
    # cumulative, rolling 12 weeks
    r("cum-kar-12w-first", "Cumulative Ka,r (12 weeks) first notification", "kar_gy", "first", 3, "Gy", window=84, modalities=FGI,
      source=CUMULATIVE + " Levels: " + NCRP168),
    r("cum-kar-12w-srdl", "Cumulative Ka,r (12 weeks) substantial radiation dose level", "kar_gy", "srdl", 5, "Gy", window=84,
      modalities=FGI, severity="high", follow_up=28, source=CUMULATIVE + " Levels: " + NCRP168),
    r("cum-kap-12w-first", "Cumulative KAP (12 weeks) first notification", "kap_gy_cm2", "first", 300, "Gy·cm²", window=84,
      modalities=FGI, source=CUMULATIVE + " Levels: " + NCRP168_UNREAD),
    r("cum-kap-12w-srdl", "Cumulative KAP (12 weeks) substantial radiation dose level", "kap_gy_cm2", "srdl", 500, "Gy·cm²", window=84,
      modalities=FGI, severity="high", follow_up=28, source=CUMULATIVE + " Levels: " + NCRP168_UNREAD),
    r("fgi-repeat-60d", "Repeat fluoroscopically guided procedure within 60 days", "procedure_count", "repeat", 2, "procedures",
      window=60, modalities=FGI, severity="low", digest=True,
      source="Repeat procedures on the same skin area: add prior doses; a window of about 60 days is commonly used "
             "(NCRP 168/SIR ◐) — dose-standards.md §4.1"),
    # CT notification values (AAPM 2011), CTDIvol per protocol class; age boundaries between the AAPM classes are ours (⚠)
    r("ct-ctdivol-adult-head", "CT CTDIvol notification value, adult head", "ctdivol_mgy", "notification", 80, "mGy", modalities="CT",
      protocol_class="head", min_age=6, verification="✔", source=AAPM_CT),
    r("ct-ctdivol-adult-torso", "CT CTDIvol notification value, adult torso", "ctdivol_mgy", "notification", 50, "mGy", modalities="CT",
      protocol_class="torso", min_age=10, verification="✔", source=AAPM_CT),
    r("ct-ctdivol-brain-perfusion", "CT CTDIvol notification value, brain perfusion", "ctdivol_mgy", "notification", 600, "mGy",
      modalities="CT", protocol_class="brain_perfusion", verification="✔", source=AAPM_CT),
    r("ct-ctdivol-cardiac", "CT CTDIvol notification value, cardiac (retrospectively gated)", "ctdivol_mgy", "notification", 150, "mGy",
      modalities="CT", protocol_class="cardiac", verification="✔",
      source=AAPM_CT + ". Gating is not in the RDSR: the prospectively gated value (50 mGy) is not applied."),
    r("ct-ctdivol-paed-head-lt2", "CT CTDIvol notification value, paediatric head < 2 y", "ctdivol_mgy", "notification", 50, "mGy",
      modalities="CT", protocol_class="head", max_age=2, verification="✔", source=AAPM_CT),
    r("ct-ctdivol-paed-head-2-5", "CT CTDIvol notification value, paediatric head 2–5 y", "ctdivol_mgy", "notification", 60, "mGy",
      modalities="CT", protocol_class="head", min_age=2, max_age=6, verification="✔", source=AAPM_CT),
    r("ct-ctdivol-paed-torso-16", "CT CTDIvol notification value, paediatric torso < 10 y (16 cm phantom)", "ctdivol_mgy",
      "notification", 25, "mGy", modalities="CT", protocol_class="torso", phantom="head_16cm", max_age=10, verification="✔", source=AAPM_CT),
    r("ct-ctdivol-paed-torso-32", "CT CTDIvol notification value, paediatric torso < 10 y (32 cm phantom)", "ctdivol_mgy",
      "notification", 10, "mGy", modalities="CT", protocol_class="torso", phantom="body_32cm", max_age=10, verification="✔", source=AAPM_CT),
    r("ct-ctdivol-alert-1000", "CT CTDIvol alert value (accumulated) — UNVERIFIED", "ctdivol_mgy", "alert", 1000, "mGy", modalities="CT",
      verification="⚠", enabled=False, severity="high",
      source="AAPM suggested 1000 mGy accumulated per examination and z-location — NOT verified (dose-standards.md §4.3 ⚠). "
             "Disabled until someone reads the AAPM statement; the modality's own Dose Check alerts are used instead."),
    r("ct-dose-check", "CT Dose Check (modality) notification/alert", "dose_check", "dose_check", modalities="CT", verification="✔",
      source="NEMA XR 25 Dose Check, reported in the RDSR as TID 10015 (CT Dose Check Details), with the reason for proceeding — "
             "dose-standards.md §4.3"),
    # pregnancy
    r("pregnancy", "Pregnancy", "pregnancy", "pregnancy", verification="✔", severity="normal",
      params={"high_priority_kap_gy_cm2": None, "high_priority_dlp_mgy_cm": None, "high_priority_kar_gy": None},
      source="Pregnancy Status (0010,21C0) possibly (0002) or definitely (0003) pregnant, or staff override; high priority when "
             "the region involves abdomen/pelvis or a configured dose level is reached; physicist conceptus-dose estimate "
             "(ACR–SPR; ICRP 84; NRPB/CoR/RCR) — dose-standards.md §5. Dose levels for high priority: site to set (no sourced default)."),
]

CT_ICRP103 = "ICRP 103 k-factors, Deak et al., Radiology 2010 (via radclass table citing AAPM Report 96 and ICRP 103) — dose-standards.md §7.1"
CT_AAPM96 = "AAPM Report 96 (2008), ICRP 60-era k-factors — dose-standards.md §7.1"
CT_UNIT = "mSv/(mGy·cm)"
DEFAULT_FACTORS = (
    [("ICRP103", "ct_dlp", reg, "adult", v, CT_UNIT, CT_ICRP103, "✔") for reg, v in
     (("head", 0.0019), ("neck", 0.0051), ("chest", 0.0145), ("abdomen", 0.0153), ("pelvis", 0.0129), ("trunk", 0.0152))]
    + [("AAPM96", "ct_dlp", reg, "adult", v, CT_UNIT, CT_AAPM96, "✔") for reg, v in
       (("head", 0.0021), ("head_neck", 0.0031), ("neck", 0.0059), ("chest", 0.014), ("abdomen", 0.015), ("pelvis", 0.015),
        ("trunk", 0.015))]
    + [("AAPM96", "ct_dlp", reg, age, v, CT_UNIT, CT_AAPM96 + " (paediatric)", "✔")
       for reg, values in (("head", (0.011, 0.0067, 0.0040, 0.0032)), ("chest", (0.039, 0.026, 0.018, 0.013)),
                           ("abdomen_pelvis", (0.049, 0.030, 0.020, 0.015)))
       for age, v in zip(("0y", "1y", "5y", "10y"), values)]
    + [("Vano-ICRP103", "kap", "cardiac", "adult", 0.21, "mSv/(Gy·cm²)",
        "Interventional cardiology (coronary angiography/PCI), no added Cu: 0.21 ± 0.05, ICRP 103, Vano et al., Phys Med — "
        "dose-standards.md §7.2", "✔")]
)
# Other E/KAP regions are ⚠ (no primary table could be re-read): deliberately not seeded (dose-standards.md §7.2).

# Peak skin dose (issue 15): evaluated once the skin-dose task has stored a study's PSD (dosereg.skindose), beside the
# Ka,r rules above. Added by migration 0006 (a new rule-set version where alerts were already raised by the active one).
PSD_NCRP168 = ("NCRP Report 168 (2010), peak skin dose: first notification 2 Gy, subsequent every 0.5 Gy (◐ not re-read "
               "in NCRP 168/Stecker 2009; a physicist should sign them off), substantial radiation dose level 3 Gy (✔ AAPM "
               "MPPG 12.a) — dose-standards.md §4.1")
PSD_TJC = ("Institutional review level, where a hospital adopts it: The Joint Commission reviewable sentinel event (2005), "
           "prolonged fluoroscopy with cumulative dose > 1500 rad (15 Gy) to a single field over 6 to 12 months (✔ JAOCR; "
           "AAPM comment letter to JCAHO, 8 Jan 2006). TJC has since replaced the numeric trigger (year not verified ◐); many "
           "hospitals keep 15 Gy peak skin dose as an internal investigation level — dose-standards.md §4.1, §4.2 (band D)")
PSD_RULES = [
    r("fgi-psd-first", "Peak skin dose first notification", "psd_gy", "first", 2, "Gy", modalities=FGI, source=PSD_NCRP168),
    r("fgi-psd-subsequent", "Peak skin dose subsequent notification", "psd_gy", "subsequent", 2, "Gy", step=0.5,
      modalities=FGI, source=PSD_NCRP168),
    r("fgi-psd-srdl", "Peak skin dose substantial radiation dose level", "psd_gy", "srdl", 3, "Gy", modalities=FGI,
      severity="high", verification="✔", follow_up=28,
      source=PSD_NCRP168 + "; clinical skin check 2–4 weeks after the procedure (◐)"),
    r("fgi-psd-review-15gy", "Peak skin dose institutional review level (15 Gy)", "psd_gy", "review", 15, "Gy",
      modalities=FGI, severity="high", follow_up=14, source=PSD_TJC),
    r("cum-psd-12m-review-15gy", "Cumulative peak skin dose (12 months) institutional review level (15 Gy)", "psd_gy",
      "review", 15, "Gy", window=365, modalities=FGI, severity="high", follow_up=14,
      source=PSD_TJC + ". Window value: the largest cell of the summed skin-dose maps where every procedure has a map "
                       "on the same phantom and orientation, else the conservative sum of the procedures' PSDs."),
]

# NM/PET (issue 16): a child's administered activity against the EANM paediatric dosage card (dosereg.exposure.eanm_card,
# nm_paediatric). ⚠ The card table is not verified against the primary card: the rule ships DISABLED (migration 0007);
# a physicist compares the table with the card, then enables the rule in a new rule-set version.
EANM_CARD_SOURCE = (
    "EANM Paediatric Dosage Card 2016-08 (Jacobs et al. 2005 method; Lassmann & Treves 2014 harmonisation): card "
    "activity = baseline × weight-class multiple (class A/B/C), not below the minimum — table version "
    "eanm-paediatric-card-2016.08/dosereg-2026.12-1 in dosereg/exposure/eanm_card.py. ⚠ UNVERIFIED: not compared with "
    "the primary card (partly cross-checked against two derived sources); disabled until a physicist has. Tolerance "
    "(params.tolerance_fraction, 0.10): a local screening choice for dose-calibrator and dispensing variation, not from "
    "the card. Studies of patients under 18 with a known age and weight; agents matched by code."
)
NM_RULES = [
    r("nm-paed-eanm-card", "NM/PET paediatric activity above the EANM dosage card — UNVERIFIED table, disabled",
      "nm_paed_activity_mbq", "notification", unit="MBq", max_age=18, verification="⚠", enabled=False,
      params={"tolerance_fraction": 0.10}, source=EANM_CARD_SOURCE),
]
