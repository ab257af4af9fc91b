"""Radiography (DX) and paediatric DRL sets: standard names, values and citations (seeded by a migration).

The project seeds as *active* only values re-read from their source (``dose-standards.md`` ✔). The two sets
here were not: their values come from the named publications as remembered and could not be re-read while
writing them (the reference marks them ⚠). They are therefore seeded **inactive** and every value carries the
note "unverified": the audit compares medians with active sets only, so nothing here is shown against
patients' doses until a physicist has checked each value against the cited source, corrected it on the DRL
sets page and switched the set on (``DRLSet.active``). Their standard names are seeded so that names can be
mapped now.

Paediatric names carry the population in the name ("Paediatric ..."), and ``naming`` never suggests a
paediatric name for an adult study name or the other way round.
"""
from __future__ import annotations

from typing import TypedDict

from .age_bands import PAED_HEAD_CT

UNVERIFIED = "unverified: check against the cited source before activating this set"


class DRLRow(TypedDict):
    name: str            # standard name
    modality: str        # standard-name modality
    quantity: str        # DRLValue quantity key (unit in the name)
    value: float         # in the quantity's unit
    label: str           # the exam as the source names it


class DRLSpec(TypedDict):
    name: str
    country: str
    year: int
    citation: str
    url: str
    rows: list[DRLRow]


def _rows(modality: str, quantity: str, items: list[tuple[str, float, str]]) -> list[DRLRow]:
    return [{"name": n, "modality": modality, "quantity": quantity, "value": v, "label": lab} for n, v, lab in items]


# UK NDRLs for adult radiography, KAP per radiograph (Gy·cm²); the registry's DX study KAP is per study, so a
# one-view examination compares directly and a multi-view study does not (see the set's notes).
DX_ADULT: DRLSpec = {
    "name": "UK NDRLs, adult radiography (2019) [unverified]",
    "country": "UK",
    "year": 2019,
    "citation": (
        "UK Health Security Agency (then PHE). Diagnostic radiology: national diagnostic reference levels "
        "(NDRLs), 'National Diagnostic Reference Levels (NDRLs) from 19 August 2019', adult radiography table "
        "(DAP per radiograph), based on PHE-CRCE-034 national reference doses. Values per single radiograph."
    ),
    "url": "https://www.gov.uk/government/publications/diagnostic-radiology-national-diagnostic-reference-levels-ndrls/ndrl",
    "rows": _rows("DX", "dap_total_gy_cm2", [
        ("Chest PA", 0.1, "Chest PA"),
        ("Abdomen AP", 2.5, "Abdomen AP"),
        ("Pelvis AP", 2.2, "Pelvis AP"),
        ("Lumbar spine AP", 1.5, "Lumbar spine AP"),
        ("Lumbar spine LAT", 2.5, "Lumbar spine LAT"),
    ]),
}

# European paediatric DRLs (RP 185), head CT by age group: the standard names of the age-band family
# (age_bands.PAED_HEAD_CT: "Paediatric head, 0 to 3 months", ...), which the audit compares per band of the patient's age
_head = [PAED_HEAD_CT.band_name(b) for b in PAED_HEAD_CT.bands]
PAED_CT: DRLSpec = {
    "name": "EU paediatric CT DRLs, RP 185 (2018) [unverified]",
    "country": "EU",
    "year": 2018,
    "citation": (
        "European Commission. Radiation Protection No 185: European Guidelines on Diagnostic Reference Levels "
        "for Paediatric Imaging. Luxembourg: Publications Office of the European Union, 2018. European DRLs for "
        "head CT by age group (CTDIvol in the 16 cm phantom, DLP per complete examination)."
    ),
    "url": "https://op.europa.eu/en/publication-detail/-/publication/0e4f9ad1-21d6-11e9-8d04-01aa75ed71a1",
    "rows": (_rows("CT", "ctdivol_max_mgy", [
        (_head[0], 24, "Head 0-<3 m"),
        (_head[1], 28, "Head 3 m-<1 y"),
        (_head[2], 40, "Head 1-<6 y"),
        (_head[3], 50, "Head >=6 y"),
    ]) + _rows("CT", "dlp_total_mgy_cm", [
        (_head[0], 300, "Head 0-<3 m"),
        (_head[1], 385, "Head 3 m-<1 y"),
        (_head[2], 505, "Head 1-<6 y"),
        (_head[3], 650, "Head >=6 y"),
    ])),
}

SETS = (DX_ADULT, PAED_CT)


def seed_unverified_sets(apps) -> None:
    """Create the sets (inactive), their standard names and values (idempotent; a migration calls it)."""
    StandardName = apps.get_model("protocols", "StandardName")
    DRLSet = apps.get_model("protocols", "DRLSet")
    DRLValue = apps.get_model("protocols", "DRLValue")
    for spec in SETS:
        s, _ = DRLSet.objects.get_or_create(
            name=spec["name"], defaults={"country": spec["country"], "year": spec["year"], "citation": spec["citation"],
                                         "url": spec["url"], "active": False})
        for row in spec["rows"]:
            sn = StandardName.objects.get_or_create(name=row["name"], modality=row["modality"])[0]
            DRLValue.objects.get_or_create(drl_set=s, standard_name=sn, quantity=row["quantity"],
                                           defaults={"value": row["value"], "exam_label": row["label"], "notes": UNVERIFIED})
