"""A hostile corpus (issue #18): generated DICOM objects that try to poison the registry, lose an
acknowledged object or join two patients. Made with the project's RDSR builder (``dosereg.rdsr.builder``)
and the bad-input suite's mutators; no Django here, so ``bench/bench_hostile.py`` uses it too.

``generate(n, seed)`` yields ``Hostile`` objects, round-robin over the families below (so any sample of
a few hundred covers every family), each with what the checks need to know:

* ``identity``: the (issuer, Patient ID) the object is meant to be filed under, or None where the object
  cannot be attributed (fuzzed, empty ID, a replacement that moves a study on purpose). Two objects with
  different identities must never end up on one patient row.
* ``refuse``: the C-STORE must be answered with a failure status and leave nothing behind (a
  non-conformant Affected SOP Instance UID).

Families: dates, UIDs, identities, encodings, values, sizes, structures, duplicates, fuzz, and ordinary
reports as controls.
"""
from __future__ import annotations

import datetime as dt
import io
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pydicom import Dataset
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from dosereg.rdsr import builder as B
from tests.badinput import fuzz
from tests.badinput import objects as O

ISSUER = "HOSTILE"


@dataclass
class Hostile:
    family: str
    case: str
    data: bytes
    sop_uid: str                       # the Affected SOP Instance UID the sender will use (from the File Meta)
    identity: tuple[str, str] | None   # (issuer, Patient ID) as meant, stripped; None: not attributable
    refuse: bool = False

    @property
    def name(self) -> str:
        return f"{self.family}/{self.case}"


class _Ctx:
    """Per-corpus state: the seed's prefix (IDs unique per run), a RNG, and earlier objects to duplicate."""

    def __init__(self, seed: int, prefix: str):
        self.rng = random.Random(seed)
        self.prefix = prefix
        self.n = 0
        self.recent: list[tuple[Dataset, tuple[str, str] | None]] = []

    def pid(self, tag: str) -> str:
        self.n += 1
        return f"{self.prefix}{tag}{self.n:06d}"

    def uid(self) -> str:
        return B._rng_uid(self.rng)


def _spec(c: _Ctx, pid: str, *, name: str = "Hostile^Patient", n_events: int = 3, when: dt.datetime | None = None,
          **kw) -> B.ProjectionRDSRSpec:
    rng = c.rng
    events = [B.ProjectionEventSpec(dap_gy_cm2=round(rng.uniform(0.1, 40.0), 3), dose_rp_gy=round(rng.uniform(0.001, 0.8), 4),
                                    kvp=75.0, tube_current_ma=5.0, irradiation_duration_s=10.0 + i,
                                    irradiation_event_uid=c.uid())
              for i in range(n_events)]
    when = when or dt.datetime(2026, 1, 1, 8, 0) + dt.timedelta(days=rng.randint(0, 300), minutes=rng.randint(0, 600))
    return B.ProjectionRDSRSpec(events=events, patient_id=pid, patient_name=name, issuer_of_patient_id=ISSUER,
                                study_datetime=when, sop_instance_uid=c.uid(), study_instance_uid=c.uid(),
                                device_serial=f"HOST{rng.randint(1, 4)}", **kw)


def _ds(c: _Ctx, pid: str, **kw) -> Dataset:
    return B.build_projection_rdsr(_spec(c, pid, **kw))


def _raw(ds: Dataset, keyword_tag: int, vr: str, value: bytes) -> None:
    """Put bytes into the header exactly as given (pydicom would refuse or fix many of these values)."""
    value += b" " * (len(value) & 1) if vr != "UI" else b"\x00" * (len(value) & 1)
    ds[Tag(keyword_tag)] = RawDataElement(Tag(keyword_tag), vr, len(value), value, 0, False, True)


def _ident(pid: str) -> tuple[str, str]:
    return (ISSUER, pid.strip())


def meta_uid(data: bytes) -> str:
    """The File Meta's Media Storage SOP Instance UID: what a sender puts in the C-STORE request ("" if unreadable)."""
    from pydicom.filereader import read_preamble, _read_file_meta_info

    try:
        fp = io.BytesIO(data)
        read_preamble(fp, False)
        return str(_read_file_meta_info(fp).get("MediaStorageSOPInstanceUID", ""))
    except Exception:
        return ""


def _out(family: str, case: str, data: bytes, identity, *, refuse: bool = False, sop_uid: str | None = None) -> Hostile:
    return Hostile(family, case, data, sop_uid or meta_uid(data), identity, refuse)


# --- dates ------------------------------------------------------------------------------------------
STUDY_DATE, STUDY_TIME, TZ_OFFSET = 0x00080020, 0x00080030, 0x00080201
BAD_DATES = ["99991231", "00000000", "20251399", "ABCDEFGH", "19000101", "18000101", "2025-01-01", "20250230",
             "2025", "", "99990101", "10000101"]
BAD_TIMES = ["230000", "246060", "ABCDEF", "", "235959.999999", "000000"]
BAD_TZ = ["-1400", "+1400", "+9999", "XYZ", "-0000", "+0530", None]


def dates(c: _Ctx) -> Hostile:
    pid = c.pid("D")
    kind = c.rng.random()
    if kind < 0.25:  # the whole document (header and every content DateTime) in year 9999 or year 1
        when = c.rng.choice([dt.datetime(9999, 12, 31, 23, 0), dt.datetime(1, 1, 1, 0, 0), dt.datetime(1850, 6, 1, 12, 0)])
        ds = _ds(c, pid, when=when)
        case = f"builder-{when.year}"
    else:
        ds = _ds(c, pid)
        d, t, tz = c.rng.choice(BAD_DATES), c.rng.choice(BAD_TIMES), c.rng.choice(BAD_TZ)
        _raw(ds, STUDY_DATE, "DA", d.encode())
        _raw(ds, STUDY_TIME, "TM", t.encode())
        if tz is not None:
            _raw(ds, TZ_OFFSET, "SH", tz.encode())
        case = f"{d or 'empty'}-{t or 'empty'}-tz{tz}"
    return _out("dates", case, B.to_bytes(ds), _ident(pid))


# --- UIDs -------------------------------------------------------------------------------------------
BAD_AFFECTED_UIDS = {
    "nul": "1.2.826.0.1.3680043.10.1077.5\x00.{n}",
    "ctrl": "1.2.826.0.1.3680043.10.1077.\x01\x1b.{n}",
    "letters": "1.2.826.0.1.3680043.10.1077.abc{n}",
    "over-long": "1.2." + "1234567890" * 7 + ".{n}",
    "empty-component": "1.2..826.{n}",
    "trailing-dot": "1.2.826.{n}.",
    "space": "1.2.826 .{n}",
}
STUDY_UID, SERIES_UID = 0x0020000D, 0x0020000E


def _with_affected_uid(data: bytes, uid: str) -> bytes:
    """Replace the File Meta's SOP Instance UID (what the sender puts in the C-STORE) by any string."""
    placeholder = "1" * len(uid)
    meta = O._meta_bytes(O.RDSR_CLASS, placeholder)
    return meta.replace(placeholder.encode(), uid.encode("latin-1"), 1) + data[O._meta_end(data):]


def uids(c: _Ctx) -> Hostile:
    pid = c.pid("U")
    r = c.rng.random()
    if r < 0.5:  # the C-STORE's own UID is not a UID: refused before anything is stored
        case = c.rng.choice(sorted(BAD_AFFECTED_UIDS))
        uid = BAD_AFFECTED_UIDS[case].format(n=c.n)
        return _out("uids", f"affected-{case}", _with_affected_uid(B.to_bytes(_ds(c, pid)), uid), None, refuse=True,
                    sop_uid=uid)
    ds = _ds(c, pid)
    # a valid Affected UID, hostile UIDs inside the data set (study, series, SOP Instance that differs from the meta)
    case = c.rng.choice(["study-over-long", "study-ctrl", "study-letters", "study-empty", "series-ctrl", "sop-differs"])
    if case == "study-over-long":
        _raw(ds, STUDY_UID, "UI", ("1.2." + "9" * 90).encode())
    elif case == "study-ctrl":
        _raw(ds, STUDY_UID, "UI", b"1.2.826.\x07\x00.5")
    elif case == "study-letters":
        _raw(ds, STUDY_UID, "UI", b"STUDY-ONE")
    elif case == "study-empty":
        _raw(ds, STUDY_UID, "UI", b"")
    elif case == "series-ctrl":
        _raw(ds, SERIES_UID, "UI", b"1.2.\x1b[31m.9")
    data = B.to_bytes(ds)
    if case == "sop-differs":  # File Meta (and so the C-STORE) names another instance than the data set
        data = _with_affected_uid(data, c.uid())
    return _out("uids", case, data, _ident(pid))


# --- identities -------------------------------------------------------------------------------------
def identities(c: _Ctx) -> list[Hostile]:
    """Groups of objects whose patients must stay apart (or, same ID with another name, together and flagged)."""
    r = c.rng.random()
    base = c.pid("I")
    out: list[Hostile] = []
    if r < 0.3:  # long IDs differing only in their last character (64: the LO limit; 128: the column; 139 beyond)
        length = c.rng.choice([64, 65, 128, 129, 139])
        stem = (base * 20)[: length - 1]
        for last in "AB":
            pid = stem + last
            out.append(_out("identities", f"long-{length}", B.to_bytes(_ds(c, pid)), _ident(pid)))
    elif r < 0.5:  # the same ID with different names (linked by ID and flagged, never split silently)
        for name in ("Smith^John", "Jones^Mary", ""):
            out.append(_out("identities", "same-id-other-name", B.to_bytes(_ds(c, base, name=name)), _ident(base)))
    elif r < 0.65:  # no ID, a blank ID, an ID of spaces
        pid = c.rng.choice(["", " ", "    "])
        out.append(_out("identities", "empty-id", B.to_bytes(_ds(c, pid or "X")), None))
        ds = _ds(c, "X")
        _raw(ds, 0x00100020, "LO", pid.encode())
        out[-1] = _out("identities", "empty-id", B.to_bytes(ds), None)
    elif r < 0.8:  # IDs that differ only in case, padding or a lookalike character
        for pid in (base + "x", base + "X", " " + base + "X", base + "\u0425"):  # the last: Cyrillic Kha
            out.append(_out("identities", "lookalike", B.to_bytes(_ds(c, pid)), _ident(pid)))
    else:  # an issuer that differs, same ID
        for issuer in ("HOSPITAL-A", "HOSPITAL-B"):
            ds = B.build_projection_rdsr(_spec(c, base))
            ds.IssuerOfPatientID = issuer
            out.append(_out("identities", "other-issuer", B.to_bytes(ds), (issuer, base)))
    return out


# --- encodings --------------------------------------------------------------------------------------
NAMES = [
    ("ISO_IR 192", "山田^太郎=やまだ^たろう"),
    ("ISO_IR 192", "Γιάννης^Παπαδόπουλος"),
    ("ISO_IR 192", "Иванов^Иван"),
    ("ISO_IR 192", "محمد^علي"),
    ("ISO_IR 192", "כהן^דוד"),
    ("ISO_IR 192", "Zoë^😀"),
    ("ISO_IR 100", "Müller^Jörg"),
    ("ISO_IR 126", "Παπαδόπουλος^Γιάννης"),
    ("ISO_IR 144", "Петров^Пётр"),
    ("\\ISO 2022 IR 87", "ヤマダ^タロウ=山田^太郎"),
    ("GB18030", "王^小明"),
]


def encodings(c: _Ctx) -> Hostile:
    pid = c.pid("E")
    ds = _ds(c, pid)
    r = c.rng.random()
    if r < 0.6:
        charset, name = c.rng.choice(NAMES)
        ds.SpecificCharacterSet = charset
        ds.PatientName = name  # pydicom encodes it in that character set when writing
        case = charset.strip("\\")
    elif r < 0.75:  # Latin-1 bytes declared as UTF-8 (invalid UTF-8)
        _raw(ds, 0x00100010, "PN", "Müller^Jörg".encode("latin-1"))
        case = "latin1-as-utf8"
    elif r < 0.9:  # a character set no one knows
        ds.SpecificCharacterSet = c.rng.choice(["ISO_IR 999", "KLINGON", "ISO 2022 IR 6\\ISO 2022 IR 999"])
        _raw(ds, 0x00100010, "PN", b"Str\xe4nge^\xff\xfe")
        case = "unknown-charset"
    else:  # control characters and markup in names and descriptions
        _raw(ds, 0x00100010, "PN", b"<script>alert(1)</script>^\x1b[2J\x07")
        _raw(ds, 0x00081030, "LO", b"=HYPERLINK(\"http://x\")\x00\x0b\x0c")
        case = "control-and-markup"
    return _out("encodings", case, B.to_bytes(ds), _ident(pid))


# --- values -----------------------------------------------------------------------------------------
BAD_VALUES = ["NaN", "nan", "inf", "-inf", "Infinity", "lots", "1E30", "-0.25", "1e308", "", "0x10", "1,5", "  "]
VALUE_CODES = [O.DAP, O.DOSE_RP, O.DAP_TOTAL]


def values(c: _Ctx) -> Hostile:
    pid = c.pid("V")
    ds = _ds(c, pid)
    code, value = c.rng.choice(VALUE_CODES), c.rng.choice(BAD_VALUES)
    O._set_numeric(ds, code, value or " ")
    return _out("values", f"{code}={value or 'empty'}", B.to_bytes(ds), _ident(pid))


# --- sizes ------------------------------------------------------------------------------------------
def sizes(c: _Ctx, *, max_events: int) -> Hostile:
    pid = c.pid("S")
    r = c.rng.random()
    if r < 0.3:
        data, _ = O.no_content()
        return _out("sizes", "empty-sr", data, None)
    if r < 0.45:
        ds = _ds(c, pid, n_events=0)
        return _out("sizes", "no-events", B.to_bytes(ds), _ident(pid))
    if r < 0.6:
        data, _ = O.many_items(c.rng.choice([500, 2000]))
        return _out("sizes", "many-junk-items", data, None)
    n = min(max_events, c.rng.choice([100, 500, 2000]))
    return _out("sizes", f"events-{n}", B.to_bytes(_ds(c, pid, n_events=n)), _ident(pid))


# --- structures -------------------------------------------------------------------------------------
def structures(c: _Ctx) -> Hostile:
    r = c.rng.random()
    if r < 0.15:
        data, _ = O.deep_nesting(c.rng.choice([70, 200, 1000]))
        return _out("structures", "deep-nesting", data, None)
    if r < 0.3:
        data, _ = O.no_dose_items()
        return _out("structures", "missing-containers", data, None)
    if r < 0.42:
        data, uid, _ = O.secondary_capture_as(c.rng.choice([O.COMPREHENSIVE_SR, O.RDSR_CLASS]))
        return _out("structures", "wrong-sop-class", data, None, sop_uid=uid)
    if r < 0.52:
        data, _ = O.truncated(c.rng.uniform(0.2, 0.95))
        return _out("structures", "truncated", data, None)
    if r < 0.62:
        data, uid, _ = O.garbage_with_preamble(seed=c.rng.getrandbits(32), size=c.rng.choice([16, 4096, 65536]))
        return _out("structures", "garbage", data, None, sop_uid=uid)
    if r < 0.7:
        data, uid, _ = O.fake_deflated()
        return _out("structures", "fake-deflated", data, None, sop_uid=uid)
    if r < 0.8:
        data, _ = O.by_reference_cycle()
        return _out("structures", "reference-cycle", data, None)
    if r < 0.9:  # a CT report whose events have no CTDIvol or DLP, or a document with the wrong template
        data = B.to_bytes(O.ct(ctdivol_mgy=None, dlp_mgy_cm=None))
        return _out("structures", "ct-without-doses", data, None)
    if r < 0.95:  # events that repeat an Irradiation Event UID (ingested, one row per UID, flagged)
        spec = _spec(c, c.pid("T"), n_events=4)
        for ev in spec.events[1:3]:
            ev.irradiation_event_uid = spec.events[0].irradiation_event_uid
        return _out("structures", "repeated-event-uid", B.to_bytes(B.build_projection_rdsr(spec)), None)
    ds = _ds(c, c.pid("T"))
    ds.ContentTemplateSequence[0].TemplateIdentifier = "2000"  # Basic Diagnostic Imaging Report, not dose
    return _out("structures", "wrong-template", B.to_bytes(ds), None)


# --- duplicates -------------------------------------------------------------------------------------
def duplicates(c: _Ctx) -> list[Hostile]:
    pid = c.pid("R")
    ds = _ds(c, pid)
    first = B.to_bytes(ds)
    r = c.rng.random()
    if r < 0.35:  # the same object twice
        return [_out("duplicates", "identical", first, _ident(pid)), _out("duplicates", "identical", first, _ident(pid))]
    if r < 0.65:  # the same events re-filed under a new Study Instance UID (counted once)
        again = B.rewrite_uids(ds, study_instance_uid=c.uid())
        return [_out("duplicates", "refiled", first, _ident(pid)),
                _out("duplicates", "refiled", B.to_bytes(again) if isinstance(again, Dataset) else again, _ident(pid))]
    # the same SOP Instance UID with other content (a correction), possibly for another patient: not attributable
    other = c.pid("R") if c.rng.random() < 0.5 else pid
    ds2 = _ds(c, other)
    ds2.SOPInstanceUID = ds.SOPInstanceUID
    ds2.StudyInstanceUID = ds.StudyInstanceUID
    return [_out("duplicates", "corrected", first, None), _out("duplicates", "corrected", B.to_bytes(ds2), None)]


# --- fuzz -------------------------------------------------------------------------------------------
def fuzzed(c: _Ctx) -> Hostile:
    pid = c.pid("F")
    data = B.to_bytes(_ds(c, pid, n_events=c.rng.randint(1, 6)))
    mutated = fuzz.mutate(data, c.rng)
    return Hostile("fuzz", "mutated", mutated, meta_uid(mutated), None, refuse=False)


# --- controls ---------------------------------------------------------------------------------------
def control(c: _Ctx) -> Hostile:
    pid = c.pid("C")
    return _out("control", "valid", B.to_bytes(_ds(c, pid)), _ident(pid))


def generate(n: int, seed: int = 18, *, prefix: str = "HX", max_events: int = 2000) -> Iterator[Hostile]:
    """``n`` hostile objects (at least; a family may yield a group), every family in turn."""
    c = _Ctx(seed, prefix)
    families: list[Callable[[_Ctx], Hostile | list[Hostile]]] = [
        dates, uids, identities, encodings, values, lambda ctx: sizes(ctx, max_events=max_events), structures,
        duplicates, fuzzed, control, dates, values,
    ]
    made = 0
    i = 0
    while made < n:
        got = families[i % len(families)](c)
        i += 1
        for h in got if isinstance(got, list) else [got]:
            made += 1
            yield h


def describe(objs: list[Hostile]) -> dict[str, int]:
    from collections import Counter

    return dict(sorted(Counter(h.family for h in objs).items()))


def _selfcheck() -> None:  # python -m tests.hostile.corpus: build 200 and print the families
    objs = list(generate(200))
    print(describe(objs), sum(len(h.data) for h in objs), "bytes")


if __name__ == "__main__":
    _selfcheck()
