"""Nuclear medicine and PET: Radiopharmaceutical Radiation Dose SR (SOP 1.2.840.10008.5.1.4.1.1.88.68,
TID 10021 with TID 10022 per administration), the Patient Radiation Dose SR (1.2.840.10008.5.1.4.1.1.88.73,
TID 10030, recorded only), and the ICRP 128 effective-dose coefficient table (versioned, cited).

Pure (no Django). Called from :mod:`dosereg.rdsr.extract` (``extract_rrdsr``, ``extract_patient_dose_sr``).
Codes are matched by (value, scheme), never by meaning.

The NM/PET part of a PET/CT study is kept apart from its CT part: administrations are their own records,
their effective-dose estimate (when a verified coefficient exists) is reported next to, never added to, the
CT estimate.
"""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from . import codes as C
from .reader import Code, Node
from .mammo import num_item
from .records import NM_HEADER, PATIENT_DOSE_SR, RRDSR, RadiopharmaceuticalAdministration

if TYPE_CHECKING:  # pragma: no cover
    from .extract_context import Header, _Ctx

RRDSR_CLASS = "1.2.840.10008.5.1.4.1.1.88.68"
PATIENT_DOSE_SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.73"

RRDSR_ROOT = C.dcm("113500")             # Radiopharmaceutical Radiation Dose Report
PATIENT_DOSE_ROOT = C.dcm("128401")      # Patient Radiation Dose Report
ADMINISTRATION = C.dcm("113502")         # Radiopharmaceutical Administration (TID 10022)
AGENT = C.sct("349358000")               # Radiopharmaceutical agent
RADIONUCLIDE = C.sct("89457008")         # Radionuclide
HALF_LIFE = C.sct("304283002")           # Radionuclide physical half-life
EVENT_UID = C.dcm("113503")              # Radiopharmaceutical Administration Event UID
START = C.dcm("123003")                  # Radiopharmaceutical Start DateTime
STOP = C.dcm("123004")                   # Radiopharmaceutical Stop DateTime
ADMINISTERED_ACTIVITY = C.dcm("113507")  # Administered activity (MBq)
PRE_ACTIVITY = C.dcm("113508")           # Pre-Administration Measured Activity
POST_ACTIVITY = C.dcm("113509")          # Post-Administration Measured Activity
VOLUME = C.dcm("123005")                 # Radiopharmaceutical Volume
ROUTE = C.sct("410675002")               # Route of administration
PATIENT_WEIGHT = ("29463-7", "LN")       # Body weight (TID 10023)
PATIENT_HEIGHT = ("8302-2", "LN")        # Body height (TID 10023)


def extract_rrdsr(ctx: _Ctx, root: Node) -> None:
    """TID 10021: one record per Radiopharmaceutical Administration; patient weight and height (TID 10023)
    complete the header's (0010,1030)/(0010,1020) when those are absent."""
    from .extract import _doc_level, _device_fallbacks

    doc = ctx.doc
    doc.source_kind = RRDSR
    doc.template_id = "10021"
    doc.procedure_modality = "NM"
    if root.concept is not None and root.key != RRDSR_ROOT:
        ctx.warn(f"unexpected root concept {root.concept.value}/{root.concept.scheme} for a Radiopharmaceutical "
                 "Radiation Dose SR; extracted anyway")
    _doc_level(ctx, root)
    for ch in root.children:
        if ch.key == ADMINISTRATION:
            doc.radiopharmaceuticals.append(_administration(ctx, ch))
        elif ch.vt == "CONTAINER":
            _patient_characteristics(ctx, ch, 0)
    if not doc.radiopharmaceuticals:
        ctx.warn("Radiopharmaceutical Radiation Dose SR without a Radiopharmaceutical Administration (113502); "
                 "nothing is recorded for this procedure")
    for a in doc.radiopharmaceuticals:
        if a.administered_activity_mbq is None:
            ctx.warn("Radiopharmaceutical Administration without Administered activity (113507)")
    if doc.start_of_irradiation is None:
        starts = [a.start_datetime for a in doc.radiopharmaceuticals if a.start_datetime is not None]
        doc.start_of_irradiation = min(starts) if starts else None
    _device_fallbacks(ctx)


def extract_patient_dose_sr(ctx: _Ctx, root: Node) -> None:
    """TID 10030: the report is recorded against its study (observer context, participants); its organ and
    skin dose estimates are not used by dosereg."""
    from .extract import _doc_level, _device_fallbacks

    doc = ctx.doc
    doc.source_kind = PATIENT_DOSE_SR
    doc.template_id = "10030"
    _doc_level(ctx, root)
    if root.concept is not None and root.key != PATIENT_DOSE_ROOT:
        ctx.warn(f"unexpected root concept {root.concept.value}/{root.concept.scheme} for a Patient Radiation "
                 "Dose SR")
    ctx.warn("Patient Radiation Dose SR (TID 10030) recorded; its dose estimates are not used by dosereg "
             "(no events, no totals)")
    _device_fallbacks(ctx)


# --- NM / PET image headers (no RRDSR) ------------------------------------------------------
NM_IMAGE_CLASSES = {"1.2.840.10008.5.1.4.1.1.20": "NM",      # Nuclear Medicine Image
                    "1.2.840.10008.5.1.4.1.1.128": "PT",     # Positron Emission Tomography Image
                    "1.2.840.10008.5.1.4.1.1.130": "PT"}     # Enhanced PET Image
T_RP_INFO_SEQ = 0x00540016        # Radiopharmaceutical Information Sequence
T_RADIOPHARMACEUTICAL = 0x00180031
T_RP_ROUTE = 0x00181070
T_RP_VOLUME = 0x00181071          # ml
T_RP_START_TIME = 0x00181072
T_RN_TOTAL_DOSE = 0x00181074      # Bq (PS3.3 C.8.9.1.1.3 / C.8.22.4: "in Bq")
T_RN_HALF_LIFE = 0x00181075       # s
T_RP_START_DT = 0x00181078
T_RP_STOP_DT = 0x00181079
T_RN_CODE_SEQ = 0x00540300
T_ROUTE_CODE_SEQ = 0x00540302
T_RP_CODE_SEQ = 0x00540304
T_SERIES_DATE, T_ACQ_DATE, T_STUDY_DATE = 0x00080021, 0x00080022, 0x00080020


def extract_nm_header(ctx: _Ctx, h: Header, modality: str) -> None:
    """An NM / PET image: one administration per Radiopharmaceutical Information Sequence item. Every image of
    a series repeats it: the administration's key (``event_uid``) is derived from the study, agent, start and
    total dose, so the registry keeps one."""
    doc = ctx.doc
    doc.source_kind = NM_HEADER
    doc.procedure_modality = modality
    for it in h.seq(T_RP_INFO_SEQ):
        a = RadiopharmaceuticalAdministration()
        code = it.code(T_RP_CODE_SEQ)
        a.radiopharmaceutical = (code[2] if code else None) or it.text(T_RADIOPHARMACEUTICAL)
        a.radiopharmaceutical_code = C.canon_str(code[0], code[1]) if code and code[0] else None
        code = it.code(T_RN_CODE_SEQ)
        if code:
            a.radionuclide, a.radionuclide_code = code[2] or code[0], (C.canon_str(code[0], code[1]) if code[0] else None)
        code = it.code(T_ROUTE_CODE_SEQ)
        a.route = (code[2] if code else None) or it.text(T_RP_ROUTE)
        a.route_code = C.canon_str(code[0], code[1]) if code and code[0] else None
        bq = it.number(T_RN_TOTAL_DOSE)
        if bq is not None and bq < 0:
            ctx.warn(f"Radionuclide Total Dose (0018,1074) {bq:g} Bq is negative; stored as null")
            bq = None
        a.administered_activity_mbq = bq / 1e6 if bq is not None else None
        a.radionuclide_half_life_s = it.number(T_RN_HALF_LIFE)
        a.volume_ml = it.number(T_RP_VOLUME)
        start = it.ascii(T_RP_START_DT)
        a.start_datetime = ctx.dt(start, "Radiopharmaceutical Start DateTime") if start else ctx.da_tm(
            h.ascii(T_SERIES_DATE) or h.ascii(T_ACQ_DATE) or h.ascii(T_STUDY_DATE), it.ascii(T_RP_START_TIME))
        stop = it.ascii(T_RP_STOP_DT)
        a.stop_datetime = ctx.dt(stop, "Radiopharmaceutical Stop DateTime") if stop else None
        key = "|".join([doc.study_instance_uid or "", a.radiopharmaceutical_code or a.radiopharmaceutical or "",
                        a.start_datetime.isoformat() if a.start_datetime else "",
                        "" if a.administered_activity_mbq is None else f"{a.administered_activity_mbq:.6g}"])
        a.event_uid = "nm-header-" + hashlib.sha1(key.encode("utf-8", "replace")).hexdigest()
        doc.radiopharmaceuticals.append(a)
    if not doc.radiopharmaceuticals:
        ctx.warn("NM/PET image without Radiopharmaceutical Information Sequence (0054,0016): no administration")
    elif all(a.administered_activity_mbq is None for a in doc.radiopharmaceuticals):
        ctx.warn("NM/PET image header without Radionuclide Total Dose (0018,1074)")


def _administration(ctx: _Ctx, node: Node) -> RadiopharmaceuticalAdministration:
    from .extract_context import _person, _text_value

    a = RadiopharmaceuticalAdministration()
    for ch in _items(node):
        k = ch.key
        if k == AGENT and isinstance(ch.value, Code):
            a.radiopharmaceutical, a.radiopharmaceutical_code = _code(ch.value)
        elif k == RADIONUCLIDE and isinstance(ch.value, Code):
            a.radionuclide, a.radionuclide_code = _code(ch.value)
        elif k == ROUTE and isinstance(ch.value, Code):
            a.route, a.route_code = _code(ch.value)
        elif k == HALF_LIFE:
            a.radionuclide_half_life_s = num_item(ctx, ch, "time_s")
        elif k == ADMINISTERED_ACTIVITY:
            a.administered_activity_mbq = num_item(ctx, ch, "activity_mbq")
        elif k == PRE_ACTIVITY:
            a.pre_administration_activity_mbq = num_item(ctx, ch, "activity_mbq")
        elif k == POST_ACTIVITY:
            a.post_administration_activity_mbq = num_item(ctx, ch, "activity_mbq")
        elif k == VOLUME:
            a.volume_ml = num_item(ctx, ch, "volume_ml")
        elif k == EVENT_UID:
            a.event_uid = _text_value(ch)
        elif k == START:
            a.start_datetime = ctx.dt(_text_value(ch), "Radiopharmaceutical Start DateTime")
        elif k == STOP:
            a.stop_datetime = ctx.dt(_text_value(ch), "Radiopharmaceutical Stop DateTime")
        elif k == C.COMMENT:
            a.comment = _text_value(ch)
        elif k == C.PERSON_NAME:
            _person(ctx, ch)
        elif k in (PATIENT_WEIGHT, PATIENT_HEIGHT):
            _patient_item(ctx, ch)
    if a.administered_activity_mbq is not None and a.administered_activity_mbq < 0:
        ctx.warn(f"Administered activity {a.administered_activity_mbq:g} MBq is negative; stored as null")
        a.administered_activity_mbq = None
    return a


def _items(node: Node, depth: int = 0):
    """The administration's items, with those of nested containers (some units group them)."""
    for ch in node.children:
        if ch.vt == "CONTAINER" and ch.key not in (ADMINISTRATION,) and depth < 2:
            yield from _items(ch, depth + 1)
        else:
            yield ch


def _patient_characteristics(ctx: _Ctx, node: Node, depth: int) -> None:
    for ch in node.children:
        if ch.key in (PATIENT_WEIGHT, PATIENT_HEIGHT):
            _patient_item(ctx, ch)
        elif ch.vt == "CONTAINER" and depth < 2:
            _patient_characteristics(ctx, ch, depth + 1)


def _patient_item(ctx: _Ctx, node: Node) -> None:
    p = ctx.doc.patient
    if node.key == PATIENT_WEIGHT:
        v = num_item(ctx, node, "mass_kg")
        if v is not None and v > 0 and p.weight_kg is None:
            p.weight_kg = v
    else:
        v = num_item(ctx, node, "length_mm")
        if v is not None and v > 0 and p.size_m is None:
            p.size_m = v / 1000.0


def _code(code: Code) -> tuple[str, str]:
    v, s = code.key
    return (code.meaning or code.value), f"{s}:{v}"


# ---------------------------------------------------------------------------
# Effective dose: ICRP Publication 128 coefficients (mSv per MBq administered)
# ---------------------------------------------------------------------------
ESTIMATE_LABEL = ("population-average estimate (not an individual risk measure; ICRP 128 coefficients for a "
                  "reference patient)")

# The shipped table. dosereg ships a coefficient only when it was confirmed against the project's reference
# file (shared/reference/dose-standards.md); that file holds no ICRP 128 value yet (next-capabilities.md §3
# marks them ◐: "values must be read from ICRP 128 itself"), so no coefficient is shipped. A site that has read
# ICRP 128 adds its rows through the setting NM_EFFECTIVE_DOSE_COEFFICIENTS (same shape, its own version and
# source per row); until then no NM effective dose is shown, with the reason.
ICRP128_TABLE: dict[str, Any] = {
    "version": "dosereg-icrp128-2026.12-1",
    "source": ("ICRP Publication 128 (2015), Radiation Dose to Patients from Radiopharmaceuticals: a Compendium "
               "of Current Information Related to Frequently Used Substances, Ann. ICRP 44(2S)"),
    "unit": "mSv/MBq",
    # "SCT:<agent code>": {"adult": value, "verification": "✔", "source": "ICRP 128 table ..., page ..."}
    "coefficients": {},
    "not_shipped": {
        "SCT:35321007": "Fluorodeoxyglucose F^18^: not in the reference file; read from ICRP 128 before use",
        "*": "no ICRP 128 coefficient has been confirmed against the reference file (◐ in next-capabilities.md §3)",
    },
}


def effective_dose(adm: RadiopharmaceuticalAdministration, table: dict[str, Any],
                   age_years: float | None = None) -> tuple[float | None, dict[str, Any]]:
    """(E in mSv or None, detail) for one administration: E = coefficient(agent, adult) × administered activity.

    Only adult coefficients are applied; a patient under 18 gets no estimate (ICRP 128 age-specific values are not
    shipped). The detail carries the label, the table version and the row's source, or the reason for None."""
    detail: dict[str, Any] = {"label": ESTIMATE_LABEL, "table_version": table.get("version"), "unit": "mSv"}
    if adm.administered_activity_mbq is None:
        detail["reason"] = "no administered activity reported"
        return None, detail
    if age_years is not None and age_years < 18:
        detail["reason"] = "paediatric patient: no age-specific ICRP 128 coefficient is shipped"
        return None, detail
    row = (table.get("coefficients") or {}).get(adm.radiopharmaceutical_code or "")
    if not row or row.get("adult") is None:
        ns = table.get("not_shipped") or {}
        detail["reason"] = ns.get(adm.radiopharmaceutical_code or "", ns.get("*", "no verified coefficient"))
        return None, detail
    coefficient = float(row["adult"])
    detail.update(method="E = coefficient × administered activity", coefficient_msv_per_mbq=coefficient,
                  source=row.get("source") or table.get("source"), verification=row.get("verification", ""))
    return round(coefficient * adm.administered_activity_mbq, 6), detail
