"""The incident register as PDF (fpdf2, as the portal's PDF in ``pdf.py``): one incident, or a year's register.

Each incident states its skin-dose basis in words: the peak skin dose (PSD) estimate where the physicist recorded
one, Ka,r otherwise, and that Ka,r is not the skin dose (``dosereg.cases.selectors.dose_basis``). Set in the same
embedded TrueType font as the portal's PDF, falling back to a core font with transliterated text when that font
cannot be used, so an export never fails because of a name or a unit.
"""
from __future__ import annotations

import logging
from datetime import datetime

from django.utils import timezone

from dosereg.cases.selectors import dose_basis

from .pdf import new_document

logger = logging.getLogger(__name__)

REGISTER_HEADINGS = ("Incident", "Declared", "Category / rule", "Exam, patient, device", "Skin dose basis", "Status")
REGISTER_WIDTHS = (20, 19, 52, 52, 60, 64)  # mm, 267 in all (A4 landscape less 15 mm margins)


def _when(value: datetime | None, with_time: bool = True) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return timezone.localtime(value).strftime("%Y-%m-%d %H:%M" if with_time else "%Y-%m-%d")
    return value.strftime("%Y-%m-%d")


def _user(u) -> str:
    if u is None:
        return "—"
    full = u.get_full_name() if hasattr(u, "get_full_name") else ""
    return f"{full} ({u.get_username()})" if full else u.get_username()


def _device(case) -> str:
    d = case.device if case.device_id else None
    return (d.display_name or d.station_name or f"device {d.pk}") if d is not None else "—"


def _rule(inc) -> str:
    r = inc.rule_snapshot or {}
    if not r.get("key"):
        return "none (declared by judgement)"
    threshold = f", level {r['threshold']:g} {r.get('unit') or ''}".rstrip() if r.get("threshold") is not None else ""
    return f"{r.get('title', r['key'])} (v{r.get('version', '?')}{threshold}) · {r.get('jurisdiction', '')}"


def incident_fields(inc) -> list[tuple[str, str]]:
    """(label, text) of one incident, in reading order (the PDF's detail block)."""
    c = inc.case
    basis = dose_basis(inc)
    patient = "—"
    if c.patient_id and c.patient is not None:
        patient = c.patient.patient_id
    rule = inc.rule_snapshot or {}
    return [
        ("Status", inc.get_status_display()),
        ("Category", inc.get_category_display()),
        ("Declared", f"{_when(inc.declared_at)} by {_user(inc.declared_by)}"),
        ("Reportable-event rule", _rule(inc)),
        ("Rule's source", rule.get("source") or "—"),
        ("Case", f"{c.pk} · {c.get_kind_display()} · {c.title.split(': ', 1)[-1]}"),
        ("Exam", f"{_when(c.exam_date)} · {c.modality or '—'} · {_device(c)}" + (f" · {c.site}" if c.site else "")),
        ("Patient ID", patient),
        ("Skin dose basis", basis["label"] + (f": {basis['value']}" if basis["value"] else "")),
        ("About the basis", basis["note"]),
        ("Summary", inc.summary or "—"),
        ("Investigation notes", inc.investigation_notes or "none"),
        ("Physicist sign-off", f"{_user(inc.signed_off_by)}, {_when(inc.signed_off_at)}" + (f": {inc.sign_off_note}" if inc.sign_off_note else "")
         if inc.signed_off_at else "pending"),
        ("Regulator", f"{inc.regulator_reference} (reported {_when(inc.reported_at, False)})" if inc.regulator_reference else "not reported"),
    ]


def incident_pdf(*, incident, now: datetime | None = None) -> bytes:
    """One incident as PDF bytes."""
    return _safe(lambda embed: _render([incident], f"Incident {incident.number}", None, now, embed_font=embed, table=False))


def register_pdf(*, incidents: list, year: int | None, scope_label: str = "", now: datetime | None = None) -> bytes:
    """A year's (or every year's) incidents as PDF bytes: the register table, then each incident in full."""
    title = f"Incident register {year}" if year else "Incident register (all years)"
    return _safe(lambda embed: _render(incidents, title, scope_label, now, embed_font=embed, table=True))


def _safe(render) -> bytes:
    try:
        return render(True)
    except Exception:
        logger.exception("incident PDF: rendering with the TrueType font failed; using a core font")
        return render(False)


def _render(incidents: list, title: str, scope_label: str | None, now: datetime | None, *, embed_font: bool, table: bool) -> bytes:
    from fpdf.fonts import FontFace

    now = now or timezone.now()
    pdf = new_document(title, embed_font=embed_font, orientation="landscape" if table else "portrait")
    t = pdf.t
    pdf.set_font(pdf.dr_family, "B", 15)
    pdf.cell(0, 8, t(title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(pdf.dr_family, "", 9)
    line = f"Exported {timezone.localtime(now):%Y-%m-%d %H:%M}"
    if table:
        line += f" · {len(incidents)} incident(s)" + (f" · sites: {scope_label}" if scope_label else "")
    pdf.multi_cell(0, 4.6, t(line + ". Skin dose basis: the peak skin dose (PSD) estimate where a physicist recorded one, "
                                  "Ka,r (reference air kerma) otherwise; each incident says which."),
                   align="L", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)

    if table:
        pdf.set_font(pdf.dr_family, "", 8)
        with pdf.table(col_widths=REGISTER_WIDTHS, width=sum(REGISTER_WIDTHS), text_align="LEFT", line_height=3.9, padding=1.1,
                       headings_style=FontFace(emphasis="BOLD", fill_color=(235, 239, 244))) as tbl:
            row = tbl.row()
            for h in REGISTER_HEADINGS:
                row.cell(t(h))
            for inc in incidents:
                c, basis = inc.case, dose_basis(inc)
                rule = (inc.rule_snapshot or {})
                row = tbl.row()
                row.cell(t(inc.number))
                row.cell(t(_when(inc.declared_at, False)))
                row.cell(t(inc.get_category_display() + (f" · {rule.get('title')} v{rule.get('version')}" if rule.get("key") else "")))
                row.cell(t(f"{_when(c.exam_date, False)} · {c.patient.patient_id if c.patient_id and c.patient else '—'} · {_device(c)}"))
                row.cell(t(basis["label"] + (f": {basis['value']}" if basis["value"] else "")))
                row.cell(t(inc.get_status_display() + (f" · {inc.regulator_reference}" if inc.regulator_reference else "")))
        if not incidents:
            pdf.ln(2)
            pdf.multi_cell(0, 5, t("No incidents."), align="L", new_x="LMARGIN", new_y="NEXT")

    for n, inc in enumerate(incidents):
        if table or n:
            pdf.add_page()
        if table or len(incidents) > 1:  # a single incident's title is the document's
            pdf.set_font(pdf.dr_family, "B", 12)
            pdf.cell(0, 7, t(f"Incident {inc.number}"), new_x="LMARGIN", new_y="NEXT")
        for label, text in incident_fields(inc):
            pdf.set_font(pdf.dr_family, "B", 9)
            pdf.write(4.6, t(f"{label}: "))
            pdf.set_font(pdf.dr_family, "", 9)
            pdf.write(4.6, t(text))
            pdf.ln(6)
    return bytes(pdf.output())

