"""HL7 FHIR R4 Observation per study, after the Radiation Dose Summary IG (STU1).

code LOINC 73569-6; components coded with DICOM (DCM) codes and UCUM units
(dose-standards.md §3.2). Values not reported are left out, never sent as 0.
"""
from __future__ import annotations

from typing import Any

from dosereg import formatting as fmt
from dosereg.registry.models import PlaneTotal, Study

PROFILE = "http://hl7.org/fhir/uv/radiation-dose-summary/StructureDefinition/radiation-dose-summary"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
IDTYPE = "http://hl7.org/fhir/uv/radiation-dose-summary/CodeSystem/dicom-identifier-type"
# The Radiation Dose Summary IG's component value set has no peak skin dose, and no DICOM code for a computed PSD
# estimate was verified: the PSD is its own Observation (derived from the summary), coded in dosereg's own system
DOSEREG_CS = "urn:dosereg:fhir:skin-dose"
SKIN_ID_PREFIX = "peak-skin-dose-"
PSD_CODE = "peak-skin-dose-estimate"
PSD_DISPLAY = "Peak skin dose (estimate)"

PROCEDURE_REPORTED = {
    "CT": (SCT, "77477000", "Computed Tomography X-Ray"),
    "MG": (SCT, "71651007", "Mammography"),
}
PROJECTION = (DCM, "113704", "Projection X-Ray")


def _coding(system: str, code: str, display: str) -> dict:
    return {"system": system, "code": code, "display": display}


def _qty(code: str, display: str, value: float, unit: str) -> dict:
    return {
        "code": {"coding": [_coding(DCM, code, display)], "text": display},
        "valueQuantity": {"value": fmt.machine(value), "unit": unit, "system": UCUM, "code": unit},
    }


def observation(study: Study, *, planes: list[PlaneTotal] | None = None, sop_uids: list[str] | None = None,
                authorizing: str = "", base_url: str = "") -> dict:
    """One RadiationDoseSummary Observation. ``planes``: active plane totals (for fluoro/acquisition split)."""
    comps: list[dict[str, Any]] = []
    mod = (study.procedure_modality or "").upper()
    system, code, display = PROCEDURE_REPORTED.get(mod, PROJECTION)
    comps.append({
        "code": {"coding": [_coding(DCM, "121058", "Procedure reported")]},
        "valueCodeableConcept": {"coding": [_coding(system, code, display)]},
    })
    if study.dap_total_gy_cm2 is not None:
        comps.append(_qty("113722", "Dose Area Product Total", study.dap_total_gy_cm2, "Gy.cm2"))
    planes = planes or []
    fl = [p.fluoro_dap_total_gy_cm2 for p in planes if p.fluoro_dap_total_gy_cm2 is not None]
    ac = [p.acquisition_dap_total_gy_cm2 for p in planes if p.acquisition_dap_total_gy_cm2 is not None]
    frames = [p.total_frames for p in planes if p.total_frames is not None]
    if fl:
        comps.append(_qty("113726", "Fluoro Dose Area Product Total", sum(fl), "Gy.cm2"))
    if ac:
        comps.append(_qty("113727", "Acquisition Dose Area Product Total", sum(ac), "Gy.cm2"))
    if study.dose_rp_max_plane_gy is not None:
        comps.append(_qty("113725", "Dose (RP) Total", study.dose_rp_max_plane_gy, "Gy"))
    if study.fluoro_time_total_s is not None:
        comps.append(_qty("113730", "Total Fluoro Time", study.fluoro_time_total_s, "s"))
    if frames:
        comps.append(_qty("113731", "Total Number of Radiographic Frames", sum(frames), "{frames}"))
    if study.dlp_total_mgy_cm is not None:
        comps.append(_qty("113813", "CT Dose Length Product Total", study.dlp_total_mgy_cm, "mGy.cm"))

    summary = ", ".join(
        f"{c['code']['coding'][0]['display']} {fmt.number(c['valueQuantity']['value'], grouping=False)} {c['valueQuantity']['unit']}"
        for c in comps if "valueQuantity" in c
    ) or "no dose quantities reported"
    identifiers = [{
        "type": {"coding": [_coding(IDTYPE, "study-instance-uid", "Study Instance UID")]},
        "system": "urn:dicom:uid", "value": f"urn:oid:{study.study_instance_uid}",
    }]
    for uid in sop_uids or []:
        identifiers.append({"type": {"coding": [_coding(IDTYPE, "sop-instance-uid", "SOP Instance UID")]},
                            "system": "urn:dicom:uid", "value": f"urn:oid:{uid}"})
    obs = {
        "resourceType": "Observation",
        "id": f"dose-summary-{study.pk}",
        "meta": {"profile": [PROFILE]},
        "identifier": identifiers,
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "imaging",
                                  "display": "Imaging"}]}],
        "code": {"coding": [_coding(LOINC, "73569-6", "Radiation exposure and protection information")]},
        "subject": {"reference": f"Patient/{study.patient_id}"} if study.patient_id else {"display": "unlinked patient"},
        "partOf": [{"type": "ImagingStudy", "identifier": {
            "type": {"coding": [_coding(IDTYPE, "study-instance-uid", "Study Instance UID")]},
            "system": "urn:dicom:uid", "value": f"urn:oid:{study.study_instance_uid}"}}],
        "valueString": summary,
        "component": comps,
    }
    if study.study_datetime:
        obs["effectiveDateTime"] = study.study_datetime.isoformat()
    if study.accession_number:
        obs["basedOn"] = [{"type": "ServiceRequest", "identifier": {
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]},
            "value": study.accession_number}}]
    if study.device_id:
        obs["device"] = {"display": str(study.device)} if study.device else {"reference": f"Device/{study.device_id}"}
    if authorizing:
        obs["performer"] = [{"type": "Practitioner", "display": authorizing}]
    return obs


def skin_observation(study: Study, skin: dict) -> dict:
    """The study's peak skin dose estimate (dosereg.skindose) as its own Observation, derived from the study's
    RadiationDoseSummary (whose components stay the IG's DICOM-coded dose indices): the PSD in Gy with where, the
    phantom, the method and its uncertainty, or ``dataAbsentReason`` with why it could not be computed."""
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"{SKIN_ID_PREFIX}{study.pk}",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "imaging", "display": "Imaging"}]}],
        "code": {"coding": [_coding(DOSEREG_CS, PSD_CODE, PSD_DISPLAY)], "text": PSD_DISPLAY},
        "subject": {"reference": f"Patient/{study.patient_id}"} if study.patient_id else {"display": "unlinked patient"},
        "derivedFrom": [{"reference": f"Observation/dose-summary-{study.pk}"}],
        "partOf": [{"type": "ImagingStudy", "identifier": {
            "type": {"coding": [_coding(IDTYPE, "study-instance-uid", "Study Instance UID")]},
            "system": "urn:dicom:uid", "value": f"urn:oid:{study.study_instance_uid}"}}],
    }
    if study.study_datetime:
        obs["effectiveDateTime"] = study.study_datetime.isoformat()
    notes = []
    if skin.get("computable") and skin.get("psd_gy") is not None:
        obs["valueQuantity"] = {"value": fmt.machine(skin["psd_gy"]), "unit": "Gy", "system": UCUM, "code": "Gy"}
        if skin.get("psd_location"):
            obs["bodySite"] = {"text": skin["psd_location"]}
        obs["method"] = {"text": f"{skin.get('method') or ''} ({skin.get('phantom') or 'unknown'} phantom)".strip()}
        if skin.get("uncertainty"):
            notes.append(skin["uncertainty"])
    else:
        obs["dataAbsentReason"] = {"coding": [_coding("http://terminology.hl7.org/CodeSystem/data-absent-reason",
                                                      "not-performed", "Not Performed")],
                                   "text": f"not computable: {skin.get('not_computable_reason') or 'no geometry'}"}
        if skin.get("kar_total_gy") is not None:
            notes.append(f"Ka,r-based estimate {fmt.number(skin['kar_total_gy'], grouping=False)} Gy: "
                         f"{skin.get('kar_total_label') or 'an upper-bound surrogate, not a skin dose'}")
    if notes:
        obs["note"] = [{"text": n} for n in notes]
    return obs


def bundle(observations: list[dict], *, base_url: str = "", included: list[dict] | None = None) -> dict:
    """A searchset: the matching summaries, and ``included`` resources (their peak skin dose observations)."""
    entries = [{"fullUrl": f"{base_url}Observation/{o['id']}", "resource": o, "search": {"mode": "match"}} for o in observations]
    entries += [{"fullUrl": f"{base_url}Observation/{o['id']}", "resource": o, "search": {"mode": "include"}}
                for o in included or []]
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(observations),
        "entry": entries,
    }
