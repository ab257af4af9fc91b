"""Seed data: roles and the verified (✔) DRL rows of dose-standards.md §8.2, with citations.

Only rows marked ✔ in the reference are seeded. Everything stays editable in
the protocol audit pages; the data migration calls ``seed_all`` once.
"""
from __future__ import annotations

from typing import TypedDict


class DRLSetSpec(TypedDict):
    name: str
    country: str
    year: int
    citation: str
    url: str


class CTDRLSpec(DRLSetSpec):
    rows: list[tuple[str, float | None, float]]  # exam, CTDIvol mGy (None: not set), DLP mGy·cm


class FluoroDRLSpec(DRLSetSpec):
    rows: list[tuple[str, float, str]]  # standard name, KAP Gy·cm², label as published


ROLE_GROUPS = ("rso", "physicist", "staff", "patient", "admin")

UK_CT: CTDRLSpec = {
    "name": "UK NDRLs, adult CT (2022)",
    "country": "UK",
    "year": 2022,
    "citation": (
        "UK Health Security Agency / DHSC. Diagnostic radiology: national diagnostic reference levels (NDRLs), "
        "'National Diagnostic Reference Levels (NDRLs) from 20 November 2024', adult CT table "
        "(values adopted 2022). National DRL = rounded 3rd quartile of room medians."
    ),
    "url": "https://www.gov.uk/government/publications/diagnostic-radiology-national-diagnostic-reference-levels-ndrls/ndrl",
    # exam, CTDIvol mGy, DLP mGy·cm
    "rows": [
        ("Head (acute stroke)", 47, 790),
        ("Paranasal sinuses", 12, 160),
        ("Cervical spine (fracture)", 16, 400),
        ("Chest (lung cancer)", 8.5, 290),
        ("Chest HRCT", 8, 300),
        ("CT pulmonary angiogram (CTPA)", 9.1, 310),
        ("Abdomen-pelvis (abscess)", 10, 530),
        ("KUB (stones)", 6.3, 290),
        ("Chest-abdomen-pelvis (cancer)", None, 660),
        ("Neck-chest-abdomen-pelvis", None, 850),
        ("CT urogram", None, 890),
        ("Virtual colonoscopy", None, 690),
    ],
}

SWISS_FLUORO: FluoroDRLSpec = {
    "name": "Swiss national fluoroscopy RLs (Aroua 2007)",
    "country": "CH",
    "year": 2007,
    "citation": "Aroua A, et al. Eur Radiol 2007;17:1621-1633. PMID 17072616. Swiss national reference levels, KAP per procedure.",
    "url": "https://pubmed.ncbi.nlm.nih.gov/17072616/",
    # standard name, KAP Gy·cm², label as published
    "rows": [
        ("Lower-limb / iliac angiography", 210, "Lower limb/iliac angiography"),
        ("Cerebral angiography", 125, "Cerebral angiography"),
        ("Coronary angiography", 80, "Coronary angiography"),
        ("Biliary drainage / stenting", 240, "Biliary drainage/stenting"),
        ("Cerebral embolisation", 440, "Cerebral embolisation"),
        ("Coronary angioplasty (PTCA/PCI)", 110, "PTCA"),
    ],
}

ESR_FLUORO: FluoroDRLSpec = {
    "name": "ESR white paper interventional RLs",
    "country": "EU",
    "year": 2011,
    "citation": (
        "European Society of Radiology white paper, Insights into Imaging, doi:10.1007/s13244-011-0108-1, Table 3 "
        "(coronary angiography and angioplasty values cite Neofotistou et al.; the others Marshall et al.)."
    ),
    "url": "https://insightsimaging.springeropen.com/articles/10.1007/s13244-011-0108-1/tables/3",
    "rows": [
        ("Coronary angiography", 57, "Coronary angiography"),
        ("Coronary angioplasty (PTCA/PCI)", 94, "Coronary angioplasty"),
        ("Embolisation", 160, "Embolisation"),
        ("ERCP", 16, "ERCP"),
    ],
}


def seed_all(apps, drl_app: str = "protocols") -> None:
    """``drl_app``: the app label of StandardName/DRLSet/DRLValue in ``apps`` ("web" in the historical
    state of the web app's seed migration, before the models moved to protocols)."""
    Group = apps.get_model("auth", "Group")
    for name in ROLE_GROUPS:
        Group.objects.get_or_create(name=name)

    StandardName = apps.get_model(drl_app, "StandardName")
    DRLSet = apps.get_model(drl_app, "DRLSet")
    DRLValue = apps.get_model(drl_app, "DRLValue")

    def std(name: str, modality: str):
        return StandardName.objects.get_or_create(name=name, modality=modality)[0]

    def drl_set(spec: DRLSetSpec):
        obj, _ = DRLSet.objects.get_or_create(
            name=spec["name"],
            defaults={k: spec[k] for k in ("country", "year", "citation", "url")},
        )
        return obj

    s = drl_set(UK_CT)
    for exam, ctdi, dlp in UK_CT["rows"]:
        sn = std(exam, "CT")
        if ctdi is not None:
            DRLValue.objects.get_or_create(drl_set=s, standard_name=sn, quantity="ctdivol_max_mgy",
                                           defaults={"value": ctdi, "exam_label": exam})
        DRLValue.objects.get_or_create(drl_set=s, standard_name=sn, quantity="dlp_total_mgy_cm",
                                       defaults={"value": dlp, "exam_label": exam})
    for spec in (SWISS_FLUORO, ESR_FLUORO):
        s = drl_set(spec)
        for exam, kap, label in spec["rows"]:
            sn = std(exam, "RF")
            DRLValue.objects.get_or_create(drl_set=s, standard_name=sn, quantity="dap_total_gy_cm2",
                                           defaults={"value": kap, "exam_label": label})
