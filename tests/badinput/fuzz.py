"""Byte-level mutations of DICOM files (seeded, reproducible: a failure names its seed)."""
from __future__ import annotations

import random
import struct

ITEM = b"\xfe\xff\x00\xe0"
ITEM_DELIM = b"\xfe\xff\x0d\xe0"
SEQ_DELIM = b"\xfe\xff\xdd\xe0"
VRS = [b"SQ", b"UN", b"OB", b"DS", b"UI", b"CS", b"UT", b"US", b"FD", b"XX", b"\x00\x00"]


def _dataset_start(data: bytes) -> int:
    if len(data) > 144 and data[128:132] == b"DICM" and data[132:136] == b"\x02\x00\x00\x00":
        return 144 + struct.unpack_from("<I", data, 140)[0]
    return 0


def _pos(rng: random.Random, lo: int, n: int) -> int:
    return rng.randrange(lo, n) if n > lo else max(0, n - 1)


def _bit_flips(rng, b, lo):
    for _ in range(rng.randint(1, 16)):
        i = _pos(rng, lo, len(b))
        b[i] ^= 1 << rng.randrange(8)


def _random_bytes(rng, b, lo):
    i = _pos(rng, lo, len(b))
    k = rng.randint(1, 64)
    b[i:i + k] = bytes(rng.getrandbits(8) for _ in range(k))


def _length_field(rng, b, lo):
    """Overwrite a 2- or 4-byte field just after what looks like an element header with an extreme length."""
    for _ in range(rng.randint(1, 4)):
        i = _pos(rng, lo, len(b) - 8)
        value = rng.choice([0, 1, 0xFFFF, 0xFFFFFFFF, 0x7FFFFFFF, 0xFFFFFFF0, rng.getrandbits(32), len(b) * 2])
        if rng.random() < 0.5:
            b[i:i + 4] = struct.pack("<I", value & 0xFFFFFFFF)
        else:
            b[i:i + 2] = struct.pack("<H", value & 0xFFFF)


def _vr(rng, b, lo):
    # find a VR-looking pair and replace it
    for _ in range(20):
        i = _pos(rng, lo, len(b) - 2)
        if bytes(b[i:i + 2]).isalpha() and bytes(b[i:i + 2]).isupper():
            b[i:i + 2] = rng.choice(VRS)
            return
    _bit_flips(rng, b, lo)


def _truncate(rng, b, lo):
    del b[_pos(rng, lo, len(b)):]


def _delete(rng, b, lo):
    i = _pos(rng, lo, len(b))
    del b[i:i + rng.randint(1, 512)]


def _duplicate(rng, b, lo):
    i = _pos(rng, lo, len(b))
    chunk = b[i:i + rng.randint(1, 2048)]
    j = _pos(rng, lo, len(b))
    b[j:j] = chunk * rng.randint(1, 4)


def _delimiters(rng, b, lo):
    for _ in range(rng.randint(1, 6)):
        i = _pos(rng, lo, len(b))
        b[i:i] = rng.choice([ITEM + b"\xff\xff\xff\xff", ITEM_DELIM + b"\x00" * 4, SEQ_DELIM + b"\x00" * 4,
                             ITEM + struct.pack("<I", rng.getrandbits(16))])


def _text(rng, b, lo):
    """Poison a text value: NUL bytes, non-UTF-8, backslashes, very long."""
    i = _pos(rng, lo, len(b))
    k = rng.randint(1, 32)
    b[i:i + k] = rng.choice([b"\x00" * k, b"\xff\xfe" * k, b"\\" * k, b"1e308" * k, b"-1" * k, b"NaN "])


_NUM_RE = __import__("re").compile(rb"-?[0-9]+(\.[0-9]+)?(E[+-]?[0-9]+)?")
_NUMBERS = [b"-1", b"0", b"1E30", b"-1E30", b"NaN", b"inf", b"-inf", b"1E-300", b"99999999", b"1,5", b"  ", b"\\", b"+"]


def _numbers(rng, b, lo):
    """Replace numeric text in place, same length (structure intact): exercises values, units and plausibility."""
    spans = [m.span() for m in _NUM_RE.finditer(bytes(b), lo)]
    for _ in range(rng.randint(1, 8)):
        if not spans:
            return
        i, j = rng.choice(spans)
        new = rng.choice(_NUMBERS)[: j - i].ljust(j - i, b" ")
        b[i:j] = new


def _same_length_text(rng, b, lo):
    i = _pos(rng, lo, len(b))
    k = min(rng.randint(1, 24), len(b) - i)
    b[i:i + k] = bytes(rng.choice(b"\x00\xff\\^=* 9-aZ\xc3") for _ in range(k))


STRUCTURE_OPS = [_bit_flips, _random_bytes, _length_field, _vr, _truncate, _delete, _duplicate, _delimiters, _text]
VALUE_OPS = [_numbers, _numbers, _same_length_text]
OPS = STRUCTURE_OPS + VALUE_OPS


def mutate(data: bytes, rng: random.Random, *, other: bytes | None = None) -> bytes:
    """1-3 mutations, mostly after the File Meta (so the object still looks like DICOM); sometimes a splice."""
    b = bytearray(data)
    lo = _dataset_start(data) if rng.random() < 0.9 else 0
    if other is not None and rng.random() < 0.1:
        cut = _pos(rng, lo, len(b))
        o = _pos(rng, _dataset_start(other), len(other))
        return bytes(b[:cut]) + other[o:]
    ops = VALUE_OPS if rng.random() < 0.5 else STRUCTURE_OPS  # half keep the structure intact
    for _ in range(rng.randint(1, 3)):
        if len(b) <= lo + 8:
            break
        rng.choice(ops)(rng, b, lo)
    return bytes(b)
