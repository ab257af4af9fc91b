"""Names shared by the exposure app (and its migrations)."""

# Django auth Group whose active users receive alerts when no routing rule matches.
RSO_GROUP = "rso"

# verification marks, as in dose-standards.md
VERIFIED = "✔"      # checked against a primary source
ESTABLISHED = "◐"   # well established, not re-read in the primary source
UNVERIFIED = "⚠"    # uncertain: verify before relying on it
VERIFICATION_CHOICES = [(VERIFIED, "✔ verified"), (ESTABLISHED, "◐ not re-read"), (UNVERIFIED, "⚠ unverified")]

# quantities (never mixed): canonical unit in the name
Q_KAR = "kar_gy"                  # reference air kerma, Gy, per reference-point definition and plane
Q_KAP = "kap_gy_cm2"              # kerma-area product, Gy·cm²
Q_FLUORO_TIME = "fluoro_time_s"   # fluoroscopy time, s
Q_DLP = "dlp_mgy_cm"              # CT DLP, mGy·cm
Q_CTDIVOL = "ctdivol_mgy"         # CT CTDIvol (max), mGy
Q_COUNT = "procedure_count"       # ionising procedures
Q_PREGNANCY = "pregnancy"         # ionising exposure of a (possibly) pregnant patient
Q_DOSE_CHECK = "dose_check"       # modality TID 10015 Dose Check notification/alert
Q_PSD = "psd_gy"                  # peak skin dose estimate, Gy (dosereg.skindose; per study, or a labelled window sum)
# a child's administered activity, MBq, against the EANM paediatric dosage card (dosereg.exposure.nm_paediatric)
Q_NM_PAED = "nm_paed_activity_mbq"
QUANTITY_CHOICES = [(q, q) for q in (Q_KAR, Q_KAP, Q_FLUORO_TIME, Q_DLP, Q_CTDIVOL, Q_COUNT, Q_PREGNANCY, Q_DOSE_CHECK, Q_PSD,
                                     Q_NM_PAED)]
CANONICAL_UNIT = {Q_KAR: "Gy", Q_KAP: "Gy·cm²", Q_FLUORO_TIME: "s", Q_DLP: "mGy·cm", Q_CTDIVOL: "mGy", Q_COUNT: "procedures",
                  Q_PSD: "Gy", Q_NM_PAED: "MBq"}
# a rule's level may be entered in another unit of the same dimension (e.g. mGy, cGy·cm², min): converted by
# dosereg.formatting.convert, the one unit table

# rule level kinds
L_FIRST = "first"            # first notification level
L_SUBSEQUENT = "subsequent"  # every step above the first level (one alert per step crossed)
L_SRDL = "srdl"              # substantial radiation dose level: triggers follow-up
L_NOTIFICATION = "notification"  # e.g. CT notification value
L_ALERT = "alert"
L_PREGNANCY = "pregnancy"
L_DOSE_CHECK = "dose_check"
L_REPEAT = "repeat"
L_REVIEW = "review"          # an institutional review level above the SRDL (e.g. 15 Gy peak skin dose)
LEVEL_KIND_CHOICES = [(k, k) for k in (L_FIRST, L_SUBSEQUENT, L_SRDL, L_NOTIFICATION, L_ALERT, L_PREGNANCY, L_DOSE_CHECK, L_REPEAT,
                                       L_REVIEW)]

EFFECTIVE_DOSE_LABEL = "population-average estimate (not an individual risk measure; ICRP 103)"

SRDL_WORDING = (
    "A substantial radiation dose level is a reference value that triggers additional dose management and "
    "medical follow-up; it does not imply that an injury will occur (ICRP/NCRP 168). Treat it as a trigger for "
    "review, not as a finding (NCRP Statement No. 11)."
)

CONCEPTUS_BANDS = [
    (50.0, "< 50 mGy: no detectable increase in malformation, growth restriction or pregnancy loss (ICRP 84, ACR–SPR) ✔"),
    (100.0, "50–100 mGy: effects scientifically uncertain or negligible for most outcomes ◐"),
    (None, "> 100 mGy: deterministic effects possible; weeks 8–15 risk of IQ reduction (thresholds ~100–300 mGy) ◐"),
]
CONCEPTUS_BANDS_TEXT = "\n".join(text for _, text in CONCEPTUS_BANDS)
PHYSICIST_REQUEST = (
    "A qualified medical physicist's conceptus-dose estimate is requested (ACR–SPR). Record it on the alert; "
    "the band above is then selected from the estimate."
)


# a window's PSD is the sum of its procedures' peak skin doses: the peaks may lie on different skin areas
PSD_SUM_LABEL = ("conservative sum of the procedures' peak skin doses: an upper bound, as the peaks may lie on "
                 "different areas of skin")


def conceptus_band(mgy: float | None) -> str:
    if mgy is None:
        return ""
    for upper, text in CONCEPTUS_BANDS:
        if upper is None or mgy < upper:
            return text
    return CONCEPTUS_BANDS[-1][1]
