"""Formatting for dose values (units always shown by the template next to the value)."""
from __future__ import annotations

import unicodedata

from django import template
from django.utils.html import escape
from django.utils.safestring import mark_safe
from django.utils.text import Truncator

from dosereg import formatting as fmt
from dosereg.access import roles as R
from dosereg.web import explain

register = template.Library()


@register.filter
def num(value, digits: int = fmt.SIG_FIGS):
    """Significant figures (``dosereg.formatting.number``); "—" for None (never 0 for 'not reported')."""
    return fmt.number(value, int(digits))


@register.filter
def minsec(seconds):
    return fmt.minsec(seconds)


def _is_quantity(field: str) -> bool:
    return field in fmt.FIELD_QUANTITY or field in fmt.QUANTITIES


@register.filter
def qv(value, field: str, grouping: bool = True):
    """A value of the dose quantity ``field`` (a field or quantity name) as people read it everywhere: its one unit,
    fluoroscopy time as m:ss (``{{ q.median|qv:q.key }}``); plain significant figures for anything else."""
    return fmt.value(field, value, grouping=grouping) if _is_quantity(field) else fmt.number(value, grouping=grouping)


@register.filter
def qunit(field: str, fallback: str = ""):
    """The unit ``qv`` shows a quantity in ("min:s" for fluoroscopy time)."""
    return fmt.display_unit(field) if _is_quantity(field) else fallback


@register.filter
def dose_value(value, field: str):
    """The number of a dose field in its display unit (``{{ w.effective_dose_msv|dose_value:"effective_dose_msv" }}``)."""
    return fmt.value(field, value, fmt.quantity_of(field).unit)


@register.filter
def device_type(modality):
    return explain.device_type(modality)


@register.filter
def pregnancy_label(value):
    return {"possibly_pregnant": "possibly pregnant", "definitely_pregnant": "pregnant", "not_pregnant": "not pregnant",
            "unknown": "unknown"}.get(value or "", value or "")


@register.filter
def get(d, key):
    try:
        return d.get(key)
    except AttributeError:
        return None


@register.simple_tag
def boxplot(q: dict, width: int = 220, height: int = 26):
    """Inline SVG box plot (min, Q1, median, Q3, max) with DRL markers; no script, CSP-safe."""
    vals = [q.get(k) for k in ("min", "q1", "median", "q3", "max")]
    key = q.get("key", "")
    if any(v is None for v in vals):
        return ""
    drls = [c["drl"].value for c in q.get("drls", [])]
    hi = max([vals[4], *drls]) * 1.08 or 1.0
    pad = 4

    def x(v):
        return pad + (width - 2 * pad) * (v / hi)

    mid = height / 2
    parts = [
        f'<line x1="{x(vals[0]):.1f}" y1="{mid}" x2="{x(vals[4]):.1f}" y2="{mid}" class="bp-whisker"/>',
        f'<line x1="{x(vals[0]):.1f}" y1="{mid - 5}" x2="{x(vals[0]):.1f}" y2="{mid + 5}" class="bp-whisker"/>',
        f'<line x1="{x(vals[4]):.1f}" y1="{mid - 5}" x2="{x(vals[4]):.1f}" y2="{mid + 5}" class="bp-whisker"/>',
        f'<rect x="{x(vals[1]):.1f}" y="{mid - 8}" width="{max(1.0, x(vals[3]) - x(vals[1])):.1f}" height="16" class="bp-box"/>',
        f'<line x1="{x(vals[2]):.1f}" y1="{mid - 8}" x2="{x(vals[2]):.1f}" y2="{mid + 8}" class="bp-median"/>',
    ]
    for c in q.get("drls", []):
        cls = "bp-drl bp-drl-above" if c["above"] else "bp-drl"
        parts.append(f'<line x1="{x(c["drl"].value):.1f}" y1="1" x2="{x(c["drl"].value):.1f}" y2="{height - 1}" class="{cls}">'
                     f'<title>{escape(c["drl"].drl_set.name)}: {qv(c["drl"].value, key)}</title></line>')
    # no thousands separator: the title separates its five numbers by commas
    title = ", ".join(f"{name} {qv(v, key, grouping=False)}" for name, v in zip(("min", "Q1", "median", "Q3", "max"), vals))
    return mark_safe(
        f'<svg class="boxplot" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{title}"><title>{title}</title>{"".join(parts)}</svg>'
    )


@register.simple_tag
def sparkbars(values, width: int = 168, height: int = 24):
    """Tiny bar chart of per-day counts (ingest health)."""
    values = list(values or [])
    if not values:
        return ""
    hi = max(values) or 1
    bw = width / len(values)
    bars = []
    for i, v in enumerate(values):
        h = 0 if not v else max(2.0, (height - 2) * v / hi)
        cls = "sb-zero" if not v else "sb-bar"
        bars.append(f'<rect x="{i * bw + 1:.1f}" y="{height - max(h, 1.5):.1f}" width="{bw - 2:.1f}" height="{max(h, 1.5):.1f}" class="{cls}"><title>{v}</title></rect>')
    return mark_safe(f'<svg class="sparkbars" width="{width}" height="{height}" viewBox="0 0 {width} {height}">{"".join(bars)}</svg>')


_SECTIONS = {
    "dashboard": "dashboard", "patient_list": "patients", "patient_history": "patients", "study_detail": "studies", "study_browser": "studies", "modality_home": "studies",
    "protocol_audit": "protocols", "protocol_names": "protocols", "drl_sets": "protocols", "fluoro_technique": "protocols",
    "staff_overview": "staff", "staff_me": "staff_me", "portal": "portal", "portal_exam": "portal", "audit_log": "audit",
    "device_list": "devices", "device_detail": "devices",
}


@register.simple_tag
def nav_for(request):
    user = getattr(request, "user", None)
    rs = R.user_roles(user)
    match = getattr(request, "resolver_match", None)
    return {
        "roles": sorted(rs),
        "section": _SECTIONS.get(match.url_name if match else "", ""),
        "dashboard": bool(rs & set(R.DASHBOARD)),
        "patients": bool(rs & set(R.CLINICAL)),
        "protocols": bool(rs & set(R.PROTOCOL_READ)),
        "devices": bool(rs & set(R.DEVICE_READ)),
        "staff_overview": bool(rs & set(R.STAFF_OVERVIEW)),
        "portal": R.PATIENT in rs,
        "staff_me": R.STAFF in rs,
        "audit": bool(rs & set(R.AUDIT_LOG)),
        "admin": bool(user and user.is_authenticated and user.is_staff),
    }


@register.filter
def interval(seconds):
    """A time between events (``dosereg.formatting.interval``): "12 min", "3.5 h", "2 days"."""
    return fmt.interval(seconds)


@register.filter
def mul10k(value):
    """m² -> cm²."""
    return None if value is None else value * 10000


@register.filter
def pn(value):
    """A DICOM person name for reading (``dosereg.formatting.person_name``: PS3.5 component groups)."""
    return fmt.person_name(value)


@register.filter
def event_type(code):
    """An irradiation event type code in words (``ct_spiral`` -> ``CT spiral``)."""
    return fmt.event_type(code)


@register.filter
def caret_free(text):
    """A DICOM description without carets."""
    return fmt.description(text)


@register.filter
def words(value):
    """snake_case code -> words."""
    return (value or "").replace("_", " ")


def _chars(text: str, n: int) -> str:
    """Django's ``truncatechars:n``, without its lazy Truncator for the usual text that fits."""
    text = unicodedata.normalize("NFC", str(text))
    return text if len(text) <= n else Truncator(text).chars(n)


@register.simple_tag
def event_rows(events, ct: bool, start: int = 0, stop: int | None = None):
    """The study page's irradiation-event rows ``events[start:stop]``: the markup the row template drew once per
    event, built in Python (a 316-event procedure: 316 template includes and 5,000 filter calls, most of the page's
    time). Each value as the filters gave it: times in the current time zone, event types in words, descriptions
    without carets, 3 significant figures, "—" for not reported."""
    from django.utils.dateformat import time_format
    from django.utils.timezone import is_aware, localtime

    def t(dt) -> str:  # the time filter's reading: an aware time in the current time zone
        return time_format(localtime(dt) if is_aware(dt) else dt, "H:i:s") if dt else "—"

    n = fmt.number
    out = []
    for e in list(events)[start:stop]:
        head = (f'<tr data-type="{escape(e.event_type)}" data-plane="{escape(e.plane)}"><td>{escape(t(e.datetime))}</td>'
                f'<td>{escape(fmt.event_type(e.event_type))}</td>')
        text = (f'<td class="small">{escape(_chars(fmt.description(e.protocol), 30))}</td>'
                f'<td class="small">{escape(_chars(e.target_region, 24))}</td>'
                f'<td class="num">{n(e.kvp)}</td><td class="num">{n(e.tube_current_ma)}</td>')
        if ct:
            out.append(head + text + (
                f'<td class="num">{n(e.ct_scanning_length_mm)}</td><td class="num">{n(e.ct_pitch_factor)}</td>'
                f'<td class="small">{escape(words(e.ctdiw_phantom) or "—")}</td>'
                f'<td class="num">{n(e.ctdivol_mgy)}</td><td class="num">{n(e.dlp_mgy_cm)}</td></tr>'))
        else:
            frames = "—" if e.number_of_frames is None else escape(str(e.number_of_frames))
            out.append(head + f'<td>{escape(e.plane)}</td>' + text + (
                f'<td class="num">{n(e.pulse_rate_per_s)}</td><td class="num">{frames}</td>'
                f'<td class="num">{n(e.irradiation_duration_s)}</td>'
                f'<td class="small">{escape(e.dose_mode or e.fluoro_mode or "—")}</td>'
                f'<td class="num">{n(e.dap_gy_cm2)}</td><td class="num">{n(e.dose_rp_gy)}</td></tr>'))
    return mark_safe("\n".join(out))


@register.simple_tag
def overview_bars(chart: dict, browser_url: str):
    """The bars of one protocol-audit overview chart (``audit_pages.overview``): each room's label, its bar linking to
    the studies behind it, and its interquartile whisker. The same markup the template drew, built in Python (a chart
    per standard name and quantity, a bar per room: hundreds of bars per page, the page's largest template cost)."""
    from django.template.defaultfilters import add
    from django.utils.formats import localize

    key = chart.get("key", "")  # the quantity's field: fluoroscopy time reads min:s
    unit, left = escape(qunit(key, chart["unit"])), chart["left"]
    label_x = add(left, -6)  # what the template's c.left|add:'-6' gave
    out = []
    for b in chart["bars"]:
        n = escape(localize(b["n"]))
        device = b["device"]
        out.append(
            f'\n      <text x="{label_x}" y="{b["ty"]}" text-anchor="end" class="ov-label">'
            f'{escape(Truncator(device).chars(30))} (n={n})</text>'
            f'\n      <a href="{escape(browser_url)}?{escape(b["query"])}" data-overview-bar><title>{escape(device)}: median '
            f'{escape(qv(b["median"], key))} {unit} (Q1 {escape(qv(b["q1"], key))}, Q3 {escape(qv(b["q3"], key))}), {n} studies</title>'
            f'\n        <rect x="{left}" y="{b["y"]}" width="{b["w"]}" height="{b["h"]}" '
            f'class="ov-bar{" ov-bar-above" if b["above"] else ""}"/></a>'
            f'\n      <line x1="{b["q1x"]}" x2="{b["q3x"]}" y1="{b["cy"]}" y2="{b["cy"]}" class="ov-iqr"/>'
        )
    return mark_safe("".join(out))
