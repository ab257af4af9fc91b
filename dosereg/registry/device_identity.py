"""Who a unit is, from what an object says about it (pure: no database).

A device is identified first by its Device Observer UID (TID 1002, 121012) and by its serial number together
with its manufacturer and model, and only last by its station name: a station name is a label set on site
(copied between rooms, reused after a replacement), so two units that share one are never merged on it
(``dosereg.registry.device_resolution.device_resolve`` uses the station only when an object carries no stronger
identifier, or when the unit it names has none of the kinds the object carries).

Manufacturers spell themselves several ways (``CANON_MEC`` in the header and "Canon Medical Systems" in a
later software version; Toshiba Medical Systems became Canon Medical Systems in 2018 and units upgraded since
send the new name), so identity compares a normalised manufacturer key: the name case-folded, punctuation
and company suffixes removed, then looked up in ``MANUFACTURER_ALIASES``. Serial numbers compare without case,
spaces, hyphens, dots, underscores and slashes ("HRM-021" and "hrm 021" are one serial). Changing these rules
changes identifier values: bump ``IDENTITY_RULES_VERSION`` and add a data migration that recomputes
``DeviceIdentifier`` values (see registry migration 0010).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

IDENTITY_RULES_VERSION = "2026-12-05"

# normalised spelling -> canonical key. Sources: the spellings of the vendor corpus (../shared/rdsr/INDEX.tsv:
# "Canon Inc.", "CANON_MEC", "SIEMENS"/"Siemens", "GE Healthcare"/"GE Medical Systems"/"GE Healthcare Surgery",
# "Philips Medical Systems") and the vendors' own renamings (Toshiba Medical Systems -> Canon Medical Systems,
# 2018; Siemens Healthcare -> Siemens Healthineers; OEC Medical Systems -> GE).
MANUFACTURER_ALIASES: dict[str, str] = {
    "canon mec": "canon medical",
    "canon medical": "canon medical",
    "toshiba": "canon medical",
    "toshiba mec": "canon medical",
    "toshiba medical": "canon medical",
    "siemens": "siemens",
    "siemens healthineers": "siemens",
    "siemens healthcare": "siemens",
    "philips": "philips",
    "philips medical": "philips",
    "philips healthcare": "philips",
    "ge": "ge",
    "ge medical": "ge",
    "ge healthcare": "ge",
    "ge healthcare surgery": "ge",
    "oec": "ge",
    "oec medical": "ge",
    "fuji": "fujifilm",
    "fujifilm": "fujifilm",
    "fuji photo film": "fujifilm",
    "hologic": "hologic",
    "carestream": "carestream",
    "carestream health": "carestream",
    "agfa": "agfa",
    "agfa healthcare": "agfa",
    "ziehm": "ziehm",
    "ziehm imaging": "ziehm",
    "shimadzu": "shimadzu",
}
# how each canonical key is shown (a device created from an alias is shown with this name)
MANUFACTURER_NAMES: dict[str, str] = {
    "canon medical": "Canon Medical Systems",
    "siemens": "Siemens",
    "philips": "Philips",
    "ge": "GE Healthcare",
    "fujifilm": "FUJIFILM",
    "hologic": "Hologic",
    "carestream": "Carestream",
    "agfa": "Agfa",
    "ziehm": "Ziehm Imaging",
    "shimadzu": "Shimadzu",
}
# company-form words dropped before the alias lookup (not "medical" alone: "Canon Medical" is not "Canon Inc.")
_SUFFIXES = {"inc", "incorporated", "corp", "corporation", "co", "ltd", "limited", "gmbh", "ag", "sa", "bv", "llc",
             "plc", "kk", "systems", "system", "solutions", "company", "international", "usa", "europe", "nv",
             "imaging"}
_WORDS = re.compile(r"[a-z0-9]+")
_SERIAL_DROP = re.compile(r"[\s\-._/]+")


def _clean(value: str | None) -> str:
    return (value or "").strip()


def manufacturer_key(name: str | None) -> str:
    words = _WORDS.findall(_clean(name).casefold())
    while words and words[-1] in _SUFFIXES:
        words.pop()
    spelled = " ".join(words)
    if spelled in MANUFACTURER_ALIASES:
        return MANUFACTURER_ALIASES[spelled]
    # "Siemens Healthineers AG" -> "siemens healthineers"; also try the first word ("SIEMENS Medical Solutions")
    if words and words[0] in MANUFACTURER_ALIASES:
        return MANUFACTURER_ALIASES[words[0]]
    return spelled


def manufacturer_display(name: str | None) -> str:
    """The canonical name of a known manufacturer, else the name as sent."""
    return MANUFACTURER_NAMES.get(manufacturer_key(name), _clean(name))


def model_key(model: str | None) -> str:
    return " ".join(_WORDS.findall(_clean(model).casefold()))


def serial_key(serial: str | None) -> str:
    return _SERIAL_DROP.sub("", _clean(serial).casefold())


def station_key(station: str | None) -> str:
    return " ".join(_clean(station).casefold().split())


KIND_OBSERVER_UID = "observer_uid"
KIND_SERIAL = "serial"
KIND_STATION = "station"
STRONG_KINDS = (KIND_OBSERVER_UID, KIND_SERIAL)


@dataclass(frozen=True)
class ReceivedIdentity:
    """A device identity exactly as an object carried it."""

    manufacturer: str = ""
    model: str = ""
    serial_number: str = ""
    station_name: str = ""
    device_observer_uid: str = ""

    @property
    def key(self) -> str:
        """A stable hash of the five values as received (the unique key of an identity row)."""
        raw = "\x1f".join((self.manufacturer, self.model, self.serial_number, self.station_name,
                           self.device_observer_uid))
        return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()

    def identifiers(self) -> list[tuple[str, str]]:
        """(kind, value) in order of strength: observer UID, serial with manufacturer and model, station last."""
        manu, model = manufacturer_key(self.manufacturer), model_key(self.model)
        out: list[tuple[str, str]] = []
        if self.device_observer_uid.strip():
            out.append((KIND_OBSERVER_UID, self.device_observer_uid.strip()[:400]))
        serial = serial_key(self.serial_number)
        if serial:
            out.append((KIND_SERIAL, f"{manu}|{model}|{serial}"[:400]))
        station = station_key(self.station_name)
        if station or manu or model:
            out.append((KIND_STATION, f"{manu}|{model}|{station}"[:400]))
        return out


def received(manufacturer: str | None, model: str | None, serial_number: str | None, station_name: str | None,
             device_observer_uid: str | None) -> ReceivedIdentity:
    return ReceivedIdentity(_clean(manufacturer)[:128], _clean(model)[:128], _clean(serial_number)[:128],
                            _clean(station_name)[:128], _clean(device_observer_uid)[:128])


def identifier_value_renormalised(kind: str, value: str) -> str:
    """An identifier value written by older rules ("manufacturer|model|serial" lower-cased as sent), rewritten
    with the current normalisation (used by the data migration)."""
    if kind == KIND_OBSERVER_UID:
        return value
    parts = value.split("|")
    if len(parts) < 3:
        return value
    manu, model, last = parts[0], "|".join(parts[1:-1]), parts[-1]
    tail = serial_key(last) if kind == KIND_SERIAL else station_key(last)
    return f"{manufacturer_key(manu)}|{model_key(model)}|{tail}"[:400]
