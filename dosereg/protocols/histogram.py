"""Mergeable log-binned histograms of dose values (pure: no Django).

A value v > 0 falls in bin ``k = floor(log(v) / log(1.01))``, i.e. ``[1.01**k, 1.01**(k+1))``: every bin is
1 % wide in relative terms, whatever the unit or magnitude. Values <= 0 share one bin (``ZERO_BIN``).

A :class:`Summary` holds the exact count, sum, minimum and maximum plus the bin counts. Summaries add
(``merge``): the summary of a union of sets of values is the merge of their summaries, so monthly summaries
combine into any period made of whole months.

Quantiles follow PostgreSQL ``percentile_cont`` (linear interpolation between the order statistics
``x[floor(h)]`` and ``x[floor(h)+1]`` with ``h = (n-1)·p``). Each order statistic is estimated by the
geometric centre of its bin, ``1.01**(k+0.5)``, clamped to the exact [min, max]; the first and last order
statistics are the exact min and max. An estimate is within a factor ``sqrt(1.01)`` of the true value, so a
relative error of at most ``MAX_RELATIVE_ERROR`` = 0.499 % for positive values (the interpolation of two
estimates keeps that bound); values of exactly 0 are exact. Count, sum, min and max are exact.

Bins are stored as bytes: one little-endian uint64 per bin, ``(index + 2**31) << 32 | count``, sorted by
index; merging is concatenation, the sort happens once per quantile computation.
"""
from __future__ import annotations

import math
import sys
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from itertools import accumulate

GROWTH = 1.01                       # bin width: each bin's upper edge is 1 % above its lower edge
_LOG_GROWTH = math.log(GROWTH)
MAX_RELATIVE_ERROR = math.sqrt(GROWTH) - 1  # 0.004988: quartile/median error bound (positive values)
ZERO_BIN = -(2 ** 31)               # values <= 0
_OFFSET = 2 ** 31                   # a bin index + _OFFSET fits 32 unsigned bits
_LOW32 = 0xFFFFFFFF
_SWAP = sys.byteorder != "little"


def bin_index(value: float) -> int:
    """The bin a value falls in."""
    if value <= 0:
        return ZERO_BIN
    return math.floor(math.log(value) / _LOG_GROWTH)


def bin_centre(index: int) -> float:
    """The value standing for a bin: its geometric centre (0 for the bin of values <= 0)."""
    if index == ZERO_BIN:
        return 0.0
    return GROWTH ** (index + 0.5)


def _pack(index: int, count: int) -> int:
    return (index + _OFFSET) << 32 | count


def encode_bins(bins: dict[int, int]) -> bytes:
    """Bytes of a histogram: one little-endian uint64 per bin, (index + 2**31) << 32 | count, by index."""
    flat = array("Q", (_pack(k, bins[k]) for k in sorted(bins)))
    if _SWAP:
        flat.byteswap()
    return flat.tobytes()


def _words(blob: bytes | bytearray | memoryview | None) -> array:
    flat = array("Q")
    if blob:
        flat.frombytes(bytes(blob))
        if _SWAP:
            flat.byteswap()
    return flat


def decode_bins(blob: bytes | bytearray | memoryview | None) -> dict[int, int]:
    """{bin index: count} of encoded bins (an index may repeat in unmerged bytes: counts add)."""
    out: dict[int, int] = {}
    for w in _words(blob):
        k = (w >> 32) - _OFFSET
        out[k] = out.get(k, 0) + (w & _LOW32)
    return out


class Summary:
    """Count, sum, min, max and 1 %-bins of a set of values; mergeable.

    The bins are kept as encoded words (``encode_bins`` format) and merged by concatenation; they are sorted
    once, when quantiles are asked for (C-level sort and prefix sums: merging thousands of monthly summaries
    costs little Python)."""

    __slots__ = ("n", "total", "minimum", "maximum", "_words")

    def __init__(self) -> None:
        self.n = 0
        self.total = 0.0
        self.minimum: float | None = None
        self.maximum: float | None = None
        self._words = bytearray()

    @classmethod
    def of(cls, values: Iterable[float]) -> Summary:
        s = cls()
        for v in values:
            s.add(v)
        return s

    def add(self, value: float) -> None:
        self.n += 1
        self.total += value
        if self.minimum is None or value < self.minimum:
            self.minimum = value
        if self.maximum is None or value > self.maximum:
            self.maximum = value
        self._words += _pack(bin_index(value), 1).to_bytes(8, "little")

    def merge_encoded(self, n: int, total: float | None, minimum: float | None, maximum: float | None,
                      blob: bytes | memoryview | None) -> None:
        """Add a stored summary (the columns of one quantity of a ProtocolSummary row)."""
        if not n:
            return
        self.n += n
        self.total += total or 0.0
        if minimum is not None and (self.minimum is None or minimum < self.minimum):
            self.minimum = minimum
        if maximum is not None and (self.maximum is None or maximum > self.maximum):
            self.maximum = maximum
        if blob:
            self._words += blob

    def merge(self, other: Summary) -> None:
        self.merge_encoded(other.n, other.total, other.minimum, other.maximum, bytes(other._words))

    @property
    def bins(self) -> dict[int, int]:
        return decode_bins(self._words)

    def encoded_bins(self) -> bytes:
        return encode_bins(self.bins)

    def quantiles(self, ps: Sequence[float]) -> list[float | None]:
        """Estimates of percentile_cont(p) for each p in ``ps`` (see the module docstring for the error bound)."""
        n = self.n
        if n == 0:
            return [None for _ in ps]
        if n == 1:
            return [self.minimum for _ in ps]
        words = sorted(_words(self._words))  # by bin index (the high 32 bits)
        cum = list(accumulate(map(_LOW32.__and__, words)))
        lo_v, hi_v = self.minimum, self.maximum
        assert lo_v is not None and hi_v is not None  # n >= 2 values were added

        def order_statistic(j: int) -> float:
            if j == 0:
                return lo_v
            if j == n - 1:
                return hi_v
            k = (words[bisect_right(cum, j)] >> 32) - _OFFSET
            return min(max(bin_centre(k), lo_v), hi_v)

        out: list[float | None] = []
        for p in ps:
            h = (n - 1) * p
            lo = math.floor(h)
            frac = h - lo
            v_lo = order_statistic(lo)
            out.append(v_lo if frac == 0 else v_lo + frac * (order_statistic(min(lo + 1, n - 1)) - v_lo))
        return out

    def quartiles(self) -> tuple[float | None, float | None, float | None]:
        q1, med, q3 = self.quantiles((0.25, 0.5, 0.75))
        return q1, med, q3

    def histogram(self, max_bars: int = 40) -> list[tuple[float, float, int]]:
        """(lower edge, upper edge, count) bars for display: the 1 % bins merged into at most ``max_bars``
        equal-width bars on a log scale between min and max (a bar's edges are bin edges)."""
        bins = self.bins
        if not bins:
            return []
        zero = [(0.0, 0.0, bins.pop(ZERO_BIN))] if ZERO_BIN in bins else []
        if not bins:
            return zero
        keys = sorted(bins)
        first, last = keys[0], keys[-1]
        per_bar = max(1, math.ceil((last - first + 1) / max_bars))
        bars: dict[int, int] = {}
        for k in keys:
            b = (k - first) // per_bar
            bars[b] = bars.get(b, 0) + bins[k]
        out = []
        for b in sorted(bars):
            lo_k = first + b * per_bar
            out.append((max(GROWTH ** lo_k, self.minimum or 0.0), min(GROWTH ** (lo_k + per_bar), self.maximum or 0.0),
                        bars[b]))
        return zero + out


def exact_quantiles(values: Iterable[float], ps: Sequence[float]) -> list[float | None]:
    """percentile_cont on the values themselves (for tests and checks)."""
    vals = sorted(values)
    n = len(vals)
    if not n:
        return [None for _ in ps]
    out: list[float | None] = []
    for p in ps:
        h = (n - 1) * p
        lo = math.floor(h)
        hi = min(lo + 1, n - 1)
        out.append(vals[lo] + (h - lo) * (vals[hi] - vals[lo]))
    return out
