"""Standard-name suggestions never cross anatomy or clinical intent (issue 17 item 2); pure, no database."""
from __future__ import annotations

import pytest

from dosereg.protocols import naming
from dosereg.protocols.drl_seeds import DX_ADULT, PAED_CT
from dosereg.web.seeds import ESR_FLUORO, SWISS_FLUORO, UK_CT

STANDARDS = ([(f"CT:{r[0]}", r[0], "CT") for r in UK_CT["rows"]]
             + [(f"RF:{r[0]}", r[0], "RF") for r in SWISS_FLUORO["rows"] + ESR_FLUORO["rows"]]
             + sorted({(f"{r['modality']}:{r['name']}", r["name"], r["modality"]) for r in DX_ADULT["rows"] + PAED_CT["rows"]}))


def suggested(source: str, modality: str) -> str | None:
    s = naming.suggest(source, modality, STANDARDS)
    return s.name if s else None


@pytest.mark.parametrize("source,modality,expected", [
    ("CT CHEST W/O", "CT", "Chest (lung cancer)"),
    ("CTPA", "CT", "CT pulmonary angiogram (CTPA)"),
    ("CT PULMONARY ANGIOGRAM", "CT", "CT pulmonary angiogram (CTPA)"),
    ("CT HEAD", "CT", "Head (acute stroke)"),
    ("CT CAP", "CT", "Chest-abdomen-pelvis (cancer)"),
    ("Thorax/Abdomen/Pelvis", "CT", "Chest-abdomen-pelvis (cancer)"),
    ("CT NECK CHEST ABDOMEN PELVIS", "CT", "Neck-chest-abdomen-pelvis"),
    ("CORO ANGIO", "XA", "Coronary angiography"),
    ("PCI", "XA", "Coronary angioplasty (PTCA/PCI)"),
    ("Chest PA", "DX", "Chest PA"),
    ("CR CHEST PA", "CR", "Chest PA"),
    ("Paediatric head 1-6 years", "CT", "Paediatric head, 1 to 6 years"),
])
def test_same_anatomy_and_intent_is_suggested(source, modality, expected):
    assert suggested(source, modality) == expected


@pytest.mark.parametrize("source,modality,never", [
    # the two errors of issue 17
    ("Coronary CTA", "CT", "CT pulmonary angiogram (CTPA)"),
    ("CT CORONARY ANGIOGRAM", "CT", "CT pulmonary angiogram (CTPA)"),
    ("CT Chest-Abdomen-Pelvis", "CT", "Neck-chest-abdomen-pelvis"),
    ("CAP", "CT", "Neck-chest-abdomen-pelvis"),
    # and their kin
    ("CTA CHEST AORTA", "CT", "CT pulmonary angiogram (CTPA)"),
    ("CTA CHEST AORTA", "CT", "Chest (lung cancer)"),
    ("CORO ANGIO", "XA", "Coronary angioplasty (PTCA/PCI)"),
    ("PCI", "XA", "Coronary angiography"),
    ("Cerebral embolisation", "XA", "Cerebral angiography"),
    ("CT Abdomen", "CT", "Abdomen-pelvis (abscess)"),
    ("CT Chest", "CT", "Chest HRCT"),
    ("Chest PA", "DX", "Abdomen AP"),
    # adult and paediatric populations never cross
    ("CT HEAD", "CT", "Paediatric head, 1 to 6 years"),
    ("PAED HEAD 1-6Y", "CT", "Head (acute stroke)"),
])
def test_cross_anatomy_or_intent_is_never_suggested(source, modality, never):
    assert suggested(source, modality) != never
    assert naming.confidence(source, never) == 0.0
    assert naming.compatibility(source, never)  # a manual mapping across them is warned about


def test_every_candidate_of_a_suggestion_shares_anatomy_and_intent():
    """Exhaustively: for every standard name as a source, whatever is suggested has its anatomy and intent."""
    for _, name, mod in STANDARDS:
        s = naming.suggest(name, mod, STANDARDS)
        if s is not None:
            a, b = naming.parse(name), naming.parse(s.name)
            assert a.anatomy == b.anatomy and a.intent == b.intent, (name, s.name)


def test_no_region_no_suggestion_and_confidence_is_visible():
    assert suggested("Protocol 7", "CT") is None
    assert suggested("Embolisation", "XA") is None  # no body region named: never guessed
    s = naming.suggest("CT CHEST W/O", "CT", STANDARDS)
    assert s is not None and 0.35 <= s.confidence <= 1.0
    exact = naming.suggest("Chest HRCT", "CT", STANDARDS)
    assert exact is not None and exact.name == "Chest HRCT" and exact.confidence > s.confidence


def test_modality_family():
    assert suggested("CT CHEST", "DX") != "Chest (lung cancer)"
    assert naming.family("XA") == "RF" and naming.family("CR") == "DX"


def test_nice_axis_ends():
    from dosereg.web.audit_pages import histogram, nice_ceiling

    assert [nice_ceiling(v) for v in (0.7, 1.0, 1.3, 2.2, 3.1, 7.0, 2380 * 1.02, 0.0)] == [1, 1, 2, 2.5, 5, 10, 2500, 1]
    h = histogram([1.0, 2.0, 2.0, 9.5], drls=[3.0])
    assert sum(b["n"] for b in h["bars"]) == 4 and h["xticks"][-1]["value"] == 10
    assert [(b["lo"], b["hi"]) for b in h["bars"]] == [(1.0, 1.0), (2.0, 2.0), (9.5, 9.5)]
