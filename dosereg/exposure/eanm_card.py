"""The EANM paediatric dosage card as a table (pure: no Django; the setting ``EANM_PAEDIATRIC_DOSAGE_CARD`` holds
it, a site replaces it with a JSON file of the same shape through ``EANM_PAEDIATRIC_DOSAGE_CARD_FILE``).

The card's method (Jacobs et al. 2005; EANM card 2008, harmonised with the North American guidelines by Lassmann &
Treves 2014, last update 2016): the activity for a child is

    A [MBq] = baseline activity (per radiopharmaceutical) × multiple (per weight class and radiopharmaceutical class
              A, B or C), and not less than the card's minimum recommended activity.

The alert rule (``nm_paediatric``) compares an administered activity with it, with a configurable tolerance.

VERIFICATION (⚠, the table ships unverified and its rule ships disabled): the primary card (EANM, version 2016-08)
could not be read from this project's sources. The multiples and baseline activities below were cross-checked
against two sources derived from the card, which agree only where listed in ``CROSS_CHECKS``:
  * the French regulation "Arrêté du 24 octobre 2011" (annexe 2, tableau 7: paediatric activities at 3.5, 10, 20,
    30 and 40 kg, derived from the EANM card), for classes A (MAG3), B (bisphosphonates, FDG, HMPAO, ECD, red
    cells, pertechnetate, MAA) and C (I-123 iodide) at 10-40 kg, within its rounding (≤ 5 MBq or ≤ 5 %);
  * P. van den Bruggen, thesis, ch. 2 table 1 (99mTc-bisphosphonates, class B, baseline 35 MBq, minimum 40 MBq:
    40, 95, 170, 240, 310, 375 MBq at 3.5, 10, 20, 30, 40, 50 kg), exact to the MBq.
  * the card's 2022 extension for PET/MR and long-axial-field PET/CT (Eur J Nucl Med Mol Imaging 2022;49:1964-1969,
    abstract): class B with its own baseline (10.7 MBq) gives 11 MBq at 3 kg and 149 MBq at 68 kg, which checks
    the class B multiples at both ends of the card (1.00 and 14.00) within 1 MBq.
Only the class B multiples at 10-40 kg (and at 3 and 68 kg) and the bisphosphonate row thus agree with two independent
sources; every other value (the other weight classes, the A and C columns outside 10-40 kg, the other baselines) has
at most one.
A physicist must compare the table with the card itself before enabling the rule (admin: Exposure > Rules).

Radiopharmaceuticals are matched by code, scheme and value ("SCT:35321007"), never by name. Only 18F-FDG carries a
code here (the SNOMED CT code dosereg's RRDSR reading already uses); the other rows are listed under ``uncoded``
with their card values, for a site to add the codes its units send (copy the row into ``radiopharmaceuticals``).
"""
from __future__ import annotations

import bisect
from typing import Any

UNVERIFIED = "⚠"

SOURCE = (
    "EANM Paediatric Dosage Card, version 2016-08 (EANM Dosimetry and Paediatrics Committees, "
    "https://eanm.org/publications/useful-resources/dosage-card); method: Jacobs F et al., Eur J Nucl Med Mol Imaging "
    "2005;32:581-588 (radiopharmaceutical classes A/B/C); harmonisation: Lassmann M, Treves ST, Eur J Nucl Med Mol "
    "Imaging 2014;41:1036-1041; 18F minimum activities (26 MBq 2D, 14 MBq 3D): Lassmann M et al., Eur J Nucl Med Mol "
    "Imaging 2008;35:1666-1668. Cross-checked (partly) against Arrêté du 24 octobre 2011, annexe 2, tableau 7 (France) "
    "and van den Bruggen, thesis ch. 2 table 1: see dosereg/exposure/eanm_card.py"
)

# weight class (kg, lower bound of the card's row: "52-54" is 52, used up to the next row) and the multiples of the
# baseline activity for radiopharmaceutical classes A, B and C
_ROWS: list[tuple[float, float, float, float]] = [
    (3, 1.00, 1.00, 1.00), (4, 1.12, 1.14, 1.33), (6, 1.47, 1.71, 2.00), (8, 1.71, 2.14, 3.00),
    (10, 1.94, 2.71, 3.67), (12, 2.18, 3.14, 4.67), (14, 2.35, 3.57, 5.67), (16, 2.53, 4.00, 6.33),
    (18, 2.71, 4.43, 7.33), (20, 2.88, 4.86, 8.33), (22, 3.06, 5.29, 9.33), (24, 3.18, 5.71, 10.00),
    (26, 3.35, 6.14, 11.00), (28, 3.47, 6.43, 12.00), (30, 3.65, 6.86, 13.00), (32, 3.77, 7.29, 14.00),
    (34, 3.88, 7.72, 15.00), (36, 4.00, 8.00, 16.00), (38, 4.18, 8.43, 17.00), (40, 4.29, 8.86, 18.00),
    (42, 4.41, 9.14, 19.00), (44, 4.53, 9.57, 20.00), (46, 4.65, 10.00, 21.00), (48, 4.77, 10.29, 22.00),
    (50, 4.88, 10.71, 23.00), (52, 5.00, 11.29, 24.67), (56, 5.24, 12.00, 26.67), (60, 5.47, 12.71, 28.67),
    (64, 5.65, 13.43, 31.00), (68, 5.77, 14.00, 32.33),
]


def _row(name: str, cls: str, baseline: float, minimum: float, note: str = "") -> dict[str, Any]:
    return {"name": name, "class": cls, "baseline_mbq": baseline, "minimum_mbq": minimum, "note": note}


EANM_CARD: dict[str, Any] = {
    "version": "eanm-paediatric-card-2016.08/dosereg-2026.12-1",
    "source": SOURCE,
    "verification": UNVERIFIED,
    "verification_note": ("not compared with the primary EANM card; partly cross-checked (class B at 10-40 kg and the "
                          "bisphosphonate row against two derived sources, the rest against one or none): a physicist "
                          "compares it with the card before enabling the rule"),
    "unit": "MBq",
    "formula": "baseline activity × multiple(weight class, radiopharmaceutical class), not below the minimum activity",
    "weight_rule": ("the card's row at or below the patient's weight (54 kg: the 52-54 row); below 3 kg the 3 kg row; "
                    "above 68 kg not evaluated (adult activities apply)"),
    "max_weight_kg": 68.0,
    "weights_kg": [w for w, *_ in _ROWS],
    "multiples": {"A": [a for _, a, _, _ in _ROWS], "B": [b for _, _, b, _ in _ROWS], "C": [c for *_, c in _ROWS]},
    # matched by "<scheme>:<value>" of the Radiopharmaceutical agent code (TID 10022 / header code sequence)
    "radiopharmaceuticals": {
        "SCT:35321007": _row("18F-FDG (oncology, torso), 3D acquisition", "B", 14.0, 14.0,
                             "the card's 2D value (25.9 MBq, minimum 26 MBq) is for 2D PET; 3D is the usual acquisition"),
    },
    # card rows without a verified code in this project: a site adds the code its units send
    "uncoded": [
        _row("99mTc bisphosphonates (MDP, HDP, DPD), bone", "B", 35.0, 40.0),
        _row("99mTc MAG3, renal", "A", 11.9, 15.0),
        _row("99mTc HMPAO, brain", "B", 51.8, 100.0),
        _row("99mTc ECD, brain", "B", 32.0, 110.0),
        _row("99mTc red blood cells, blood pool", "B", 56.0, 80.0),
        _row("99mTc pertechnetate, thyroid", "B", 5.6, 10.0),
        _row("99mTc MAA, lung perfusion", "B", 5.6, 10.0),
        _row("123I sodium iodide, thyroid", "C", 0.6, 3.0),
    ],
}

# What two sources derived from the card state (activity in MBq at a weight in kg), and how closely the table above
# reproduces it (tests/exposure/test_nm_paediatric.py checks every entry)
CROSS_CHECKS: list[dict[str, Any]] = [
    {"source": "van den Bruggen, thesis ch. 2 table 1", "row": "99mTc bisphosphonates (MDP, HDP, DPD), bone",
     "tolerance_mbq": 0.5, "activities": {3.5: 40, 10: 95, 20: 170, 30: 240, 40: 310, 50: 375}},
    {"source": "Arrêté du 24 octobre 2011, annexe 2, tableau 7", "row": "99mTc bisphosphonates (MDP, HDP, DPD), bone",
     "tolerance_mbq": 5, "activities": {3.5: 40, 10: 95, 20: 170, 30: 240, 40: 310}},
    {"source": "Arrêté du 24 octobre 2011, annexe 2, tableau 7", "row": "99mTc MAG3, renal",
     "tolerance_mbq": 5, "activities": {3.5: 15, 10: 25, 20: 35, 30: 45, 40: 50}},
    {"source": "Arrêté du 24 octobre 2011, annexe 2, tableau 7", "row": "99mTc HMPAO, brain",
     "tolerance_mbq": 5, "activities": {3.5: 100, 10: 140, 20: 250, 30: 355, 40: 460}},
    {"source": "Arrêté du 24 octobre 2011, annexe 2, tableau 7", "row": "99mTc ECD, brain",
     "tolerance_mbq": 5, "activities": {3.5: 110, 10: 110, 20: 155, 30: 220, 40: 285}},
    {"source": "Arrêté du 24 octobre 2011, annexe 2, tableau 7", "row": "99mTc pertechnetate, thyroid",
     "tolerance_mbq": 5, "activities": {3.5: 10, 10: 15, 20: 30, 30: 40, 40: 50}},
    {"source": "Arrêté du 24 octobre 2011, annexe 2, tableau 7", "row": "99mTc MAA, lung perfusion",
     "tolerance_mbq": 5, "activities": {3.5: 10, 10: 15, 20: 30, 30: 40, 40: 50}},
    {"source": "Arrêté du 24 octobre 2011, annexe 2, tableau 7", "row": "123I sodium iodide, thyroid",
     "tolerance_mbq": 1, "activities": {3.5: 3, 20: 5, 30: 8, 40: 10}},
    # rounded more coarsely in the regulation (to 5 MBq upwards for FDG; 400 for 384 MBq of red cells): 5 %
    {"source": "Arrêté du 24 octobre 2011, annexe 2, tableau 7", "row": "18F-FDG (oncology, torso), 3D acquisition",
     "tolerance_fraction": 0.05, "tolerance_mbq": 2.5, "activities": {3.5: 15, 10: 40, 20: 70, 30: 100, 40: 125}},
    {"source": "Arrêté du 24 octobre 2011, annexe 2, tableau 7", "row": "99mTc red blood cells, blood pool",
     "tolerance_fraction": 0.05, "activities": {3.5: 80, 10: 150, 20: 270, 30: 400, 40: 500}},
    # the class B multiples at both ends of the card (3 kg and 68 kg), from a third source: the EANM card's PET/MR
    # and long-axial-field PET/CT extension states its class B parameters and the activities they give at 3 and 68 kg
    {"source": ("The effect of modern PET technology and techniques on the EANM paediatric dosage card, Eur J Nucl "
                "Med Mol Imaging 2022;49(6):1964-1969, doi:10.1007/s00259-021-05635-2, PubMed 34910233 (abstract: "
                "class B, baseline 10.7 MBq, minimum 10 MBq; 11 MBq at 3 kg, 149 MBq at 68 kg)"),
     "row_params": {"name": "[18F]FDG PET/MR and PET/CT with an axial field of view >= 25 cm (2022 extension)",
                    "class": "B", "baseline_mbq": 10.7, "minimum_mbq": 10.0},
     "tolerance_mbq": 1.0, "activities": {3.0: 11, 68.0: 149}},
]


def card_row(table: dict[str, Any], name: str) -> dict[str, Any] | None:
    """A radiopharmaceutical row by its name (coded or not); for the cross-checks and the admin, never for matching."""
    for row in [*table.get("radiopharmaceuticals", {}).values(), *table.get("uncoded", [])]:
        if row.get("name") == name:
            return row
    return None


def card_activity(table: dict[str, Any], row: dict[str, Any], weight_kg: float) -> tuple[float | None, dict[str, Any]]:
    """(the card's activity in MBq, detail) for a radiopharmaceutical row and a body weight; None above the card's
    weights (adult activities apply) or without a weight."""
    detail: dict[str, Any] = {"card_version": table.get("version"), "card_verification": table.get("verification"),
                              "radiopharmaceutical_class": row.get("class"), "baseline_mbq": row.get("baseline_mbq"),
                              "minimum_mbq": row.get("minimum_mbq"), "weight_kg": weight_kg}
    weights = [float(w) for w in table.get("weights_kg", [])]
    multiples = (table.get("multiples") or {}).get(row.get("class") or "")
    if weight_kg is None or weight_kg <= 0 or not weights or not multiples:
        detail["reason"] = "no body weight" if not weight_kg or weight_kg <= 0 else "no multiples for the class"
        return None, detail
    if weight_kg > float(table.get("max_weight_kg", weights[-1])):
        detail["reason"] = f"above the card's weights ({weights[-1]:g} kg): adult activities apply"
        return None, detail
    i = max(0, bisect.bisect_right(weights, weight_kg) - 1)
    multiple = float(multiples[i])
    activity = max(float(row["baseline_mbq"]) * multiple, float(row.get("minimum_mbq") or 0.0))
    detail.update(weight_class_kg=weights[i], multiple=multiple, card_activity_mbq=round(activity, 3))
    return round(activity, 3), detail
