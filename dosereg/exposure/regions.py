"""Body-region classification from what the device sent (target region, protocol, description).

Text matching is deliberately conservative: an unknown region gets no factor and no
protocol class rather than a guessed one.
"""
from __future__ import annotations

import re

_PATTERNS = [
    ("perfusion", r"perfusion"),
    ("cardiac", r"coronar|cardiac|heart|\bpci\b|\bptca\b|calcium scor|\bcta cor|ventricul|cardio"),
    ("head", r"\bhead\b|brain|skull|cerebr|cranial|sinus|orbit|\biam\b|petrous|facial|neuro"),
    ("neck", r"\bneck\b|cervical|carotid|thyroid|c-spine|larynx"),
    ("chest", r"chest|thora|lung|pulmon|\bthx\b|\bcap\b|\btap\b|\bct pa\b"),
    ("abdomen", r"abdom|\babdo|liver|renal|kidney|pancrea|\bercp\b|upper gi|\bkub\b|\bcap\b|\btap\b|hepat|biliar"),
    ("pelvis", r"pelvi|hip\b|hips\b|sacr|uter|bladder|prostat|\bcap\b|\btap\b|femoral|iliac|lumbar|l-spine|colon|barium|rect"),
    ("trunk", r"trunk|whole body|body\b"),
    ("limb", r"extremit|knee|ankle|foot|feet|hand|wrist|elbow|shoulder|humer|tibia|fibula|forearm"),
]
_COMPILED = [(name, re.compile(rx, re.I)) for name, rx in _PATTERNS]


def regions_of(*texts: str | None) -> set[str]:
    found: set[str] = set()
    for text in texts:
        if not text:
            continue
        for name, rx in _COMPILED:
            if rx.search(text):
                found.add(name)
    return found


def involves_abdomen_pelvis(regions: set[str]) -> bool:
    return bool(regions & {"abdomen", "pelvis", "trunk"})


def ct_protocol_class(regions: set[str], phantom: str | None) -> str:
    """AAPM notification-value classes: brain_perfusion, cardiac, head, torso, or "" when unknown."""
    if "perfusion" in regions and ("head" in regions or phantom == "head_16cm" or not regions - {"perfusion"}):
        return "brain_perfusion"
    if "cardiac" in regions:
        return "cardiac"
    if regions & {"chest", "abdomen", "pelvis", "trunk"}:
        return "torso"
    if "head" in regions:
        return "head"
    if phantom == "head_16cm" and not regions:
        return "head"
    if phantom == "body_32cm" and not regions:
        return "torso"
    return ""


def ct_k_region(regions: set[str]) -> str:
    """Region key of the CT k-factor tables (dose-standards §7.1)."""
    if "trunk" in regions or ("chest" in regions and regions & {"abdomen", "pelvis"}):
        return "trunk"
    if "head" in regions and "neck" in regions:
        return "head_neck"
    for key in ("chest", "abdomen", "pelvis", "neck", "head"):
        if key in regions:
            return key
    return ""


def paediatric_bracket(age_years: float | None) -> str:
    """AAPM Report 96 paediatric columns (0, 1, 5, 10 y); "adult" from 15 y; "" if unknown."""
    if age_years is None:
        return ""
    if age_years < 0.5:
        return "0y"
    if age_years < 3:
        return "1y"
    if age_years < 7.5:
        return "5y"
    if age_years < 15:
        return "10y"
    return "adult"
