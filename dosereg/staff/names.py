"""Name normalisation for matching staff: DICOM PN "Family^Given" == "Given Family" == "FAMILY, Given".

The key is order-insensitive (sorted tokens), case-folded, accent-free, without honorifics, with
ae/oe/ue folded to a/o/u (so Müller == Mueller == Muller).
Only the alphabetic component group of a PN (before the first "=") is used.
"""
from __future__ import annotations

import re
import unicodedata

HONORIFICS = {"dr", "prof", "professor", "mr", "mrs", "ms", "miss", "mx", "sir", "md", "phd", "rn", "frcr", "jr", "sr"}
_SPLIT = re.compile(r"[\s^,;.]+")


def strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    out = "".join(c for c in decomposed if not unicodedata.combining(c))
    return out.replace("ß", "ss").replace("ø", "o").replace("Ø", "O").replace("ł", "l").replace("Ł", "L").replace("æ", "ae")


def name_tokens(name: str) -> list[str]:
    if not name:
        return []
    alphabetic = str(name).split("=", 1)[0]
    text = strip_accents(alphabetic).casefold()
    text = text.replace("'", "").replace("’", "")
    text = re.sub(r"-", " ", text)
    tokens = [t for t in _SPLIT.split(text) if t]
    tokens = [_fold(re.sub(r"[^0-9a-z]", "", t)) for t in tokens]
    return [t for t in tokens if t and t not in HONORIFICS]


def _fold(token: str) -> str:
    """German transliteration: Müller, Mueller and Muller give one key (a clash of two people is "ambiguous")."""
    return token.replace("ae", "a").replace("oe", "o").replace("ue", "u")


def normalise_name(name: str) -> str:
    """Matching key, e.g. "Müller^Anna" and "anna MULLER" -> "anna muller"."""
    return " ".join(sorted(name_tokens(name)))


def display_name(name: str) -> str:
    """"Family^Given^Middle" -> "Given Middle Family" for messages."""
    alphabetic = str(name or "").split("=", 1)[0]
    if "^" not in alphabetic:
        return alphabetic.strip()
    parts = [p.strip() for p in alphabetic.split("^")]
    family, given = parts[0], parts[1] if len(parts) > 1 else ""
    middle = parts[2] if len(parts) > 2 else ""
    return " ".join(p for p in (given, middle, family) if p)
