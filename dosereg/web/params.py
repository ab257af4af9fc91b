"""Query parameters, read once and validated in one place (pages and the REST API).

Every value a client sends in a query string is parsed here before it reaches a query: integers
within the range of an id column, real calendar dates, IP addresses, and free text without NUL
characters (PostgreSQL cannot store or compare a NUL in text) and of bounded length.

The rule, the same everywhere:

* **REST API and JSON endpoints** (``strict=True``): a malformed value answers **400** with
  ``{"<parameter>": "<what is wrong>"}`` (``InvalidParameter``; the API views turn it into a
  DRF ``ValidationError``).
* **HTML pages** (``strict=False``): a malformed filter is **ignored** (the page is shown as if the
  parameter were absent) and listed in ``QueryParams.errors`` so the page can say which filter
  was dropped and why. Filters are how people navigate; a typo must not cost them the page.
* **Free text** (search boxes) is never an error: NUL characters are removed and the value is cut
  to its field's length.
* **Ids in the URL path** are matched by the ``id`` path converter (``IdConverter``): only 1 to
  ``MAX_ID``, so an out-of-range id is a 404 like any other id that does not exist.
"""
from __future__ import annotations

import builtins
import ipaddress
import re
from dataclasses import dataclass
from datetime import date, datetime, time

from django.utils import timezone
from django.utils.dateparse import parse_date as _dj_parse_date, parse_datetime as _dj_parse_datetime

# BigAutoField / SQLite INTEGER: beyond this the database driver raises (OverflowError on SQLite)
MAX_ID = 2**63 - 1
# years kept clear of the edges of the calendar: datetime.min/max overflow when converted to UTC or
# shifted by a day (until=9999-12-31 -> "< 10000-01-01")
MIN_YEAR, MAX_YEAR = 1000, 9998
TEXT_MAX = 128
_INT_RE = re.compile(r"-?[0-9]{1,30}")


class InvalidParameter(ValueError):
    """A query parameter that cannot be used: ``name`` and a message for the client."""

    def __init__(self, name: str, message: str):
        self.name = name
        self.message = message
        super().__init__(f"{name}: {message}")

    def as_dict(self) -> dict[str, str]:
        return {self.name: self.message}


# ---------------------------------------------------------------------------
# single values (raise InvalidParameter; None for an absent or empty value)
# ---------------------------------------------------------------------------
def clean_text(value: str | None, *, max_length: int = TEXT_MAX) -> str:
    """Free text: NUL characters removed, surrounding blanks stripped, at most ``max_length`` characters."""
    if not value:
        return ""
    return value.replace("\x00", "").strip()[:max_length]


def parse_int(value: str | None, name: str, *, min_value: int = 1, max_value: int = MAX_ID) -> int | None:
    """An integer (ids by default: 1..MAX_ID)."""
    value = clean_text(value, max_length=40)
    if not value:
        return None
    if not _INT_RE.fullmatch(value):  # not int(): it also takes "1_000" and non-ASCII digits
        raise InvalidParameter(name, f"{value[:20]!r} is not an integer")
    n = int(value)
    if not min_value <= n <= max_value:
        raise InvalidParameter(name, f"{value[:20]} is out of range ({min_value}..{max_value})")
    return n


def _check_year(d: date | datetime, name: str, raw: str) -> None:
    if not MIN_YEAR <= d.year <= MAX_YEAR:
        raise InvalidParameter(name, f"{raw[:40]!r}: the year must be between {MIN_YEAR} and {MAX_YEAR}")


def parse_date(value: str | None, name: str) -> date | None:
    """A calendar date, YYYY-MM-DD (2025-02-30 and 2025-13-01 are errors, not 500s)."""
    value = clean_text(value, max_length=40)
    if not value:
        return None
    try:
        d = _dj_parse_date(value)
    except ValueError:  # well-formed but impossible
        raise InvalidParameter(name, f"{value!r} is not a valid date") from None
    if d is None:
        raise InvalidParameter(name, f"{value!r} is not a date (use YYYY-MM-DD)")
    _check_year(d, name, value)
    return d


def parse_datetime(value: str | None, name: str) -> datetime | None:
    """An ISO 8601 date or date-time, returned aware: a date is its midnight, a value without an offset
    is read in the current time zone."""
    value = clean_text(value, max_length=64)
    if not value:
        return None
    try:
        dt = _dj_parse_datetime(value)
        if dt is None:
            d = _dj_parse_date(value)
            dt = datetime.combine(d, time.min) if d else None
    except ValueError:  # well-formed but impossible (2025-02-30, 25:99)
        raise InvalidParameter(name, f"{value!r} is not a valid date or time") from None
    if dt is None:
        raise InvalidParameter(name, f"{value!r} is not an ISO 8601 date or date-time")
    _check_year(dt, name, value)
    return dt if timezone.is_aware(dt) else timezone.make_aware(dt)


def parse_ip(value: str | None, name: str) -> str | None:
    """An IPv4 or IPv6 address (what the audit trail stores), normalised."""
    value = clean_text(value, max_length=64)
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise InvalidParameter(name, f"{value[:45]!r} is not an IP address") from None


def parse_choice(value: str | None, name: str, choices) -> str | None:
    value = clean_text(value, max_length=64)
    if not value:
        return None
    if value not in choices:
        raise InvalidParameter(name, f"{value[:40]!r} is not one of {', '.join(sorted(choices))}")
    return value


# ---------------------------------------------------------------------------
# a request's query string
# ---------------------------------------------------------------------------
class QueryParams:
    """Typed access to ``request.GET`` / ``request.query_params`` with the rule above.

    ``strict=True`` (API): the first invalid value raises ``InvalidParameter``.
    ``strict=False`` (pages): an invalid value reads as absent (None) and is recorded in ``errors``.
    """

    def __init__(self, query, *, strict: bool):
        self.query = query
        self.strict = strict
        self.errors: dict[str, str] = {}

    def _read(self, fn, name: str, *args, **kwargs):
        try:
            return fn(self.query.get(name), name, *args, **kwargs)
        except InvalidParameter as exc:
            if self.strict:
                raise
            self.errors[exc.name] = exc.message
            return None

    def text(self, name: str, *, max_length: int = TEXT_MAX) -> str:
        return clean_text(self.query.get(name), max_length=max_length)

    def int(self, name: str, **kwargs) -> int | None:
        return self._read(parse_int, name, **kwargs)

    def date(self, name: str) -> date | None:
        return self._read(parse_date, name)

    def datetime(self, name: str) -> datetime | None:
        return self._read(parse_datetime, name)

    def ip(self, name: str) -> str | None:
        return self._read(parse_ip, name)

    def choice(self, name: str, choices) -> str | None:
        return self._read(parse_choice, name, choices)

    def ints(self, name: str) -> list[builtins.int]:  # `int` here is the method above
        """Every value of a repeated parameter (``?ids=1&ids=2``); invalid ones follow the rule."""
        out = []
        for raw in self.query.getlist(name):
            try:
                n = parse_int(raw, name)
            except InvalidParameter as exc:
                if self.strict:
                    raise
                self.errors[exc.name] = exc.message
                continue
            if n is not None:
                out.append(n)
        return out

    def messages(self) -> list[str]:
        """For a page: one line per ignored filter."""
        return [f"filter {name!r} ignored: {msg}" for name, msg in self.errors.items()]


# ---------------------------------------------------------------------------
# ids in the URL path
# ---------------------------------------------------------------------------
class IdConverter:
    """``<id:pk>``: a database id, 1..MAX_ID. Anything else does not match (404)."""

    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        n = int(value)
        if not 1 <= n <= MAX_ID:
            raise ValueError(value)  # the URL resolver treats this as "no match"
        return n

    def to_url(self, value) -> str:
        return str(int(value))


class PageNumbers:
    """Mixin of a page of a list with a true count (``count``, ``page``, ``page_size``): the 1-based numbers of
    its first and last rows ("rows 51 to 100 of 2,345")."""

    count: int
    page: int
    page_size: int

    @property
    def first_index(self) -> int:
        return (self.page - 1) * self.page_size + 1 if self.count else 0

    @property
    def last_index(self) -> int:
        return min(self.count, self.page * self.page_size)


@dataclass
class ListPage(PageNumbers):
    """One page of a list already in memory (``of``: the requested page, clamped to the pages there are)."""

    rows: list
    count: int
    page: int
    pages: int
    page_size: int

    @classmethod
    def of(cls, items: list, page: builtins.int | None, page_size: builtins.int) -> ListPage:
        count = len(items)
        pages = max(1, -(-count // page_size))
        page = min(max(1, page or 1), pages)
        start = (page - 1) * page_size
        return cls(rows=items[start:start + page_size], count=count, page=page, pages=pages, page_size=page_size)


def query_without(request, *names: str) -> str:
    """The request's query string without the parameters ``names`` (a page's links to other pages or sorts)."""
    q = request.GET.copy()
    for n in names:
        q.pop(n, None)
    return q.urlencode()


class SortChoice:
    """Mixin of list filters with a ``sort`` of a column key, ``-`` first for descending: the key, the direction
    and the ORDER BY term (empty values last either way)."""

    sort: str

    @property
    def sort_key(self) -> str:
        return self.sort.lstrip("-")

    @property
    def descending(self) -> bool:
        return self.sort.startswith("-")

    def order(self, expr):
        return expr.desc(nulls_last=True) if self.descending else expr.asc(nulls_last=True)
