"""Standard-name suggestions for vendors' study and protocol names (pure: no Django).

A suggestion attaches a diagnostic reference level to real patients' procedures, so a wrong one is worse than
none. Every name is read into three parts:

* **anatomy**: the body regions it covers (``head``, ``chest``, ``abdomen``, ``pelvis``, ``neck``, ``heart``,
  ``pulmonary arteries``, ...). "Chest-abdomen-pelvis" is {chest, abdomen, pelvis}; "neck-chest-abdomen-pelvis"
  adds neck, so the two are different examinations.
* **intent**: what the procedure is for when that changes the dose (angiography, angioplasty, embolisation,
  drainage, HRCT, urography, colonography, perfusion, biopsy). A coronary CT angiogram (heart, angiography) is
  never a CT pulmonary angiogram (pulmonary arteries, angiography), a coronary angiography never an angioplasty.
* the **population**: a paediatric name (paed, child, infant, ...) is read as an intent of its own, so adult
  and paediatric names never cross.
* the remaining **words**, which only rank candidates.

A standard name is suggested only when its modality family, anatomy and intent are all *equal* to the source's
(and the source names some anatomy): a name that says nothing about the body region gets no suggestion. Among
the admissible names the best word overlap wins; its ``confidence`` (0..1) is shown to the person who confirms.
Indications that qualify a national DRL's patient group ("acute stroke", "lung cancer", "abscess") are ordinary
words: they lower the confidence when the source does not say them but do not forbid the match.

``compatibility`` gives the reasons two names differ in anatomy or intent, so a manual mapping across them
can be shown a warning before it is confirmed.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass

MIN_CONFIDENCE = 0.35  # below this no suggestion is offered

# multi-word phrases read first (order matters: longer before shorter)
_PHRASES: list[tuple[str, str]] = [
    (r"\bpulmonary\s+angio\w*", " ctpa "), (r"\bpulmonary\s+embol\w*", " ctpa "), (r"\bpulm\s+angio\w*", " ctpa "),
    (r"\bcervical\s+spine\b", " cspine "), (r"\bc\s+spine\b", " cspine "), (r"\bthoracic\s+spine\b", " tspine "),
    (r"\bt\s+spine\b", " tspine "), (r"\blumbar\s+spine\b", " lspine "), (r"\bl\s+spine\b", " lspine "),
    (r"\blower\s+limbs?\b", " lowerlimb "), (r"\bupper\s+limbs?\b", " upperlimb "),
    (r"\bbarium\s+swallow\b", " swallow "), (r"\bbarium\s+enema\b", " enema "), (r"\bbarium\s+meal\b", " meal "),
    (r"\bvirtual\s+colonoscopy\b", " colonography "), (r"\bct\s+colonography\b", " colonography "),
    (r"\bhigh\s+resolution\b", " hrct "),
]
# word -> anatomy regions
ANATOMY: dict[str, tuple[str, ...]] = {
    "head": ("head",), "brain": ("head",), "skull": ("head",), "cerebral": ("head",), "cranial": ("head",),
    "intracranial": ("head",), "neuro": ("head",),
    "sinus": ("sinuses",), "sinuses": ("sinuses",), "paranasal": ("sinuses",),
    "neck": ("neck",), "cspine": ("cervical spine",), "tspine": ("thoracic spine",), "lspine": ("lumbar spine",),
    "lumbar": ("lumbar spine",),
    "chest": ("chest",), "thorax": ("chest",), "thoracic": ("chest",), "lung": ("chest",), "lungs": ("chest",),
    "ctpa": ("pulmonary arteries",), "pe": ("pulmonary arteries",),
    "coronary": ("heart",), "coronaries": ("heart",), "cardiac": ("heart",), "heart": ("heart",), "coro": ("heart",),
    "ptca": ("heart",), "pci": ("heart",), "calcium": ("heart",),
    "abdomen": ("abdomen",), "abd": ("abdomen",), "abdo": ("abdomen",), "abdominal": ("abdomen",),
    "liver": ("abdomen",), "biliary": ("biliary tree",), "ercp": ("biliary tree",),
    "pelvis": ("pelvis",), "pelv": ("pelvis",), "pelvic": ("pelvis",),
    "cap": ("chest", "abdomen", "pelvis"), "tap": ("chest", "abdomen", "pelvis"),
    "kub": ("urinary tract",), "urogram": ("urinary tract",), "urography": ("urinary tract",), "renal": ("urinary tract",),
    "colon": ("colon",), "colonography": ("colon",), "enema": ("colon",),
    "swallow": ("oesophagus",), "oesophagus": ("oesophagus",), "esophagus": ("oesophagus",), "meal": ("stomach",),
    "lowerlimb": ("lower limb",), "iliac": ("lower limb",), "femoral": ("lower limb",), "leg": ("lower limb",),
    "legs": ("lower limb",), "peripheral": ("lower limb",), "runoff": ("lower limb",),
    "upperlimb": ("upper limb",), "knee": ("knee",), "hip": ("hip",), "hips": ("hip",), "shoulder": ("shoulder",),
    "hand": ("hand",), "wrist": ("wrist",), "foot": ("foot",), "ankle": ("ankle",), "elbow": ("elbow",),
    "breast": ("breast",), "mammo": ("breast",), "mammography": ("breast",), "mammogram": ("breast",),
}
# word -> intents
INTENT: dict[str, tuple[str, ...]] = {
    "angio": ("angiography",), "angiography": ("angiography",), "angiogram": ("angiography",), "cta": ("angiography",),
    "ctpa": ("angiography",), "pe": ("angiography",), "arteriography": ("angiography",), "venography": ("angiography",),
    "angioplasty": ("angioplasty",), "ptca": ("angioplasty",), "pci": ("angioplasty",), 
    "embolisation": ("embolisation",), "embolization": ("embolisation",), "embo": ("embolisation",),
    "coiling": ("embolisation",),
    "drainage": ("drainage",), "nephrostomy": ("drainage",),
    "hrct": ("hrct",), "urogram": ("urography",), "urography": ("urography",),
    "colonography": ("colonography",), "perfusion": ("perfusion",), "biopsy": ("biopsy",),
    "ercp": ("ercp",), "calcium": ("calcium score",),
    # the population is part of what a DRL is for: adult and paediatric names never cross
    "paed": ("paediatric",), "paeds": ("paediatric",), "paediatric": ("paediatric",), "pediatric": ("paediatric",),
    "peds": ("paediatric",), "child": ("paediatric",), "children": ("paediatric",), "infant": ("paediatric",),
    "neonate": ("paediatric",), "neonatal": ("paediatric",), "baby": ("paediatric",),
}
_STOP = {"ct", "xr", "dx", "cr", "rf", "xa", "mg", "the", "and", "with", "w", "wo", "without", "contrast", "c",
         "adult", "routine", "std", "standard", "protocol", "exam", "examination", "of", "a", "o", "plain",
         "non", "iv", "scan", "series", "study", "helical", "spiral", "axial", "v", "for", "or", "to", "in", "x",
         "ray", "xray", "radiograph", "image", "images", "procedure"}
_NORMAL = {"angiogram": "angiography", "angio": "angiography", "cta": "angiography", "embolization": "embolisation",
           "embo": "embolisation", "brain": "head", "thorax": "chest", "abd": "abdomen", "abdo": "abdomen",
           "pelv": "pelvis", "urography": "urogram", "sinus": "sinuses", "coro": "coronary", "abdominal": "abdomen",
           "pelvic": "pelvis", "lungs": "lung"}


@dataclass(frozen=True)
class NameParts:
    anatomy: frozenset[str]
    intent: frozenset[str]
    words: frozenset[str]


def family(modality: str) -> str:
    """The standard-name modality of a procedure modality (XA and RF share the fluoroscopy names; CR is DX)."""
    m = (modality or "").upper()
    return {"XA": "RF", "CR": "DX"}.get(m, m)


def parse(name: str) -> NameParts:
    text = " " + re.sub(r"[^a-z0-9]+", " ", (name or "").lower()) + " "
    for pattern, repl in _PHRASES:
        text = re.sub(pattern, repl, text)
    anatomy: set[str] = set()
    intent: set[str] = set()
    words: set[str] = set()
    for w in text.split():
        if w in _STOP or w.isdigit():
            continue
        anatomy.update(ANATOMY.get(w, ()))
        intent.update(INTENT.get(w, ()))
        words.add(_NORMAL.get(w, w))
    return NameParts(frozenset(anatomy), frozenset(intent), frozenset(words))


def compatibility(source: str, target: str) -> list[str]:
    """Why ``target`` is not the same examination as ``source`` (empty: same anatomy and intent)."""
    a, b = parse(source), parse(target)
    out = []
    if not a.anatomy:
        out.append(f"{source!r} names no body region")
    elif a.anatomy != b.anatomy:
        out.append(f"body region differs: {', '.join(sorted(a.anatomy))} vs {', '.join(sorted(b.anatomy)) or 'none'}")
    if a.intent != b.intent:
        out.append(f"clinical intent differs: {', '.join(sorted(a.intent)) or 'none'} vs {', '.join(sorted(b.intent)) or 'none'}")
    return out


def confidence(source: str, target: str) -> float:
    """0..1: how well ``target`` matches ``source`` (0 when anatomy or intent differ or the source names no region)."""
    a, b = parse(source), parse(target)
    if not a.anatomy or a.anatomy != b.anatomy or a.intent != b.intent:
        return 0.0
    union = a.words | b.words
    jaccard = len(a.words & b.words) / len(union) if union else 0.0
    ratio = difflib.SequenceMatcher(None, " ".join(sorted(a.words)), " ".join(sorted(b.words))).ratio()
    # anatomy and intent agree: that alone is a fair match; the words refine it
    return round(min(1.0, 0.4 + 0.4 * jaccard + 0.2 * ratio), 2)


@dataclass(frozen=True)
class Suggestion:
    key: object        # the caller's id of the standard name
    name: str
    confidence: float  # 0..1


def suggest(source: str, modality: str, standards: Iterable[tuple[object, str, str]],
            min_confidence: float = MIN_CONFIDENCE) -> Suggestion | None:
    """The best standard name among ``standards`` ((key, name, modality) tuples) of the same modality family,
    body region and clinical intent; None when nothing admissible reaches ``min_confidence``."""
    fam = family(modality)
    best: Suggestion | None = None
    for key, name, mod in standards:
        if family(mod) != fam:
            continue
        c = confidence(source, name)
        if c >= min_confidence and (best is None or c > best.confidence):
            best = Suggestion(key=key, name=name, confidence=c)
    return best
