"""The patient portal's PDF: the printable page's content (``portal_print.html``) as a real PDF, made with fpdf2.

Names and units carry characters outside Latin-1 (Ø, ł, Greek names, "·" and "²" in Gy·cm²), so the text is set
in an embedded TrueType font (``PORTAL_PDF_FONT``, Debian's DejaVu Sans by default; only the glyphs used are
embedded). When that font is missing or cannot be read the PDF is still made, in a core font with the text
transliterated to Latin-1 (ł -> l, Greek -> Latin letters, anything else -> "?"): a download never fails
because of a name.
"""
from __future__ import annotations

import logging
import unicodedata
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from dosereg import formatting as fmt

logger = logging.getLogger(__name__)
logging.getLogger("fontTools").setLevel(logging.WARNING)  # fpdf2 subsets the font with fontTools, which logs each step

TITLE = "My imaging examinations"
FAMILY = "DejaVu"
CORE_FAMILY = "Helvetica"

# the printable page's text (templates/web/portal_print.html and _portal_caveats.html)
CAVEATS = [
    ("About these numbers.",
     "The values below are dose indices recorded by the equipment. They describe the machine's output, measured in "
     "standard ways; they are not the dose to your organs, and they are not a measure of your personal risk."),
    ("Your care comes first.",
     "A past examination, or the total of several, is never a reason on its own to avoid an examination your doctor "
     "considers necessary: the benefit of a justified examination outweighs the small radiation risk. If you have "
     "questions, talk to your doctor or the hospital's radiation protection team."),
]
EFFECTIVE_DOSE_NOTE = (
    "Where an effective dose estimate is shown, it is a population-average figure compared with the {source} "
    "(about {msv} mSv per year). Estimates are only given where a verified published conversion factor applies "
    "(mainly CT)."
)
MEANINGS = [
    ("KAP (Gy·cm²)", "total X-ray output times beam area; not an organ or skin dose."),
    ("Ka,r (Gy)", "air kerma at a fixed reference point, used to watch for skin effects; not your actual skin dose."),
    ("Fluoroscopy time (min:s)", "how long live X-ray imaging was on; not a dose."),
    ("CTDIvol (mGy) and DLP (mGy·cm)", "CT scanner output measured in a standard test object; not your personal dose."),
    ("SAR (W/kg)", "radio-wave energy in MRI; not ionising radiation."),
    ("Effective dose (mSv)", "a population-average estimate for comparing examinations (only where a verified "
                             "conversion factor applies), compared with the {source}; not your personal risk."),
]
FINAL_NOTE = ("These values are dose indices, not organ doses. A past examination, or the total of several, must never "
              "on its own stop an examination your doctor considers necessary.")
HEADINGS = ("Date", "Examination", "Equipment", "Dose indices reported", "Effective dose (estimate)")
COL_WIDTHS = (20, 42, 34, 52, 32)  # mm, 180 in all (A4 less 15 mm margins)


# ---------------------------------------------------------------------------
# text for the core-font fallback
# ---------------------------------------------------------------------------
_SPECIAL = {
    "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ħ": "h", "Ħ": "H", "ı": "i", "œ": "oe", "Œ": "OE", "ŋ": "ng", "Ŋ": "NG",
    "ĸ": "k", "ŧ": "t", "Ŧ": "T", "ß": "ss", "–": "-", "—": "-", "‐": "-", "‑": "-", "−": "-", "‘": "'", "’": "'",
    "‚": ",", "“": '"', "”": '"', "„": '"', "…": "...", "≥": ">=", "≤": "<=", "→": "->", "•": "-", "€": "EUR",
    "\u00a0": " ", "\u202f": " ", "\u2009": " ",
}
_GREEK = {
    "α": "a", "β": "v", "γ": "g", "δ": "d", "ε": "e", "ζ": "z", "η": "i", "θ": "th", "ι": "i", "κ": "k", "λ": "l",
    "μ": "m", "ν": "n", "ξ": "x", "ο": "o", "π": "p", "ρ": "r", "σ": "s", "ς": "s", "τ": "t", "υ": "y", "φ": "f",
    "χ": "ch", "ψ": "ps", "ω": "o",
}


def _one(ch: str) -> str:
    if ch in _SPECIAL:
        return _SPECIAL[ch]
    low = ch.lower()
    if low in _GREEK:
        g = _GREEK[low]
        return g.capitalize() if ch != low else g
    return "?"


def latin1(text: str) -> str:
    """``text`` in Latin-1 for a core font: kept where possible, accents dropped, a few letters transliterated."""
    out = []
    for ch in text or "":
        if ord(ch) < 256:
            out.append(ch)
            continue
        if ch in _SPECIAL:
            out.append(_SPECIAL[ch])
            continue
        base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
        out.append("".join(c if ord(c) < 256 else _one(c) for c in base) or "?")
    return "".join(out)


# ---------------------------------------------------------------------------
# the document
# ---------------------------------------------------------------------------
def _fpdf_class(title: str = TITLE):
    from fpdf import FPDF

    class DoseregPDF(FPDF):
        dr_family = CORE_FAMILY
        dr_unicode = False

        def t(self, text: Any) -> str:
            text = "" if text is None else str(text)
            return text if self.dr_unicode else latin1(text)

        def footer(self):
            self.set_y(-12)
            self.set_font(self.dr_family, "", 8)
            self.set_text_color(110)
            self.cell(0, 5, self.t(f"dosereg · {title} · page {self.page_no()}/{{nb}}"), align="C")

    return DoseregPDF


def new_document(title: str, *, embed_font: bool, orientation: str = "portrait"):
    """An A4 document with dosereg's metadata, margins, footer and font (the TrueType font when ``embed_font`` and
    it can be used, else a core font with transliteration), its first page added."""
    pdf = _fpdf_class(title)(orientation=orientation, unit="mm", format="A4")
    pdf.dr_unicode = embed_font and _use_font(pdf)
    if pdf.dr_unicode:
        pdf.dr_family = FAMILY
    pdf.set_title(title)
    pdf.set_author("dosereg")
    pdf.set_creator("dosereg")
    pdf.set_lang("en")
    pdf.set_margins(15, 15, 15)
    pdf.set_auto_page_break(True, margin=16)
    pdf.add_page()
    return pdf


def _use_font(pdf) -> bool:
    """Embed the configured TrueType font (and its bold face, if beside it); False when it cannot be used."""
    path = Path(settings.DOSEREG_PORTAL_PDF_FONT or "")
    if not path.name or not path.is_file():
        logger.warning("portal PDF: font %s not found; using a core font with transliteration", path)
        return False
    bold = path.with_name(f"{path.stem}-Bold{path.suffix}")
    try:
        pdf.add_font(FAMILY, "", str(path))
        pdf.add_font(FAMILY, "B", str(bold if bold.is_file() else path))
    except Exception:  # a broken or unsupported font file must not break the download
        logger.exception("portal PDF: font %s could not be loaded; using a core font with transliteration", path)
        return False
    return True


def _pn(value: str) -> str:
    from .templatetags.dose import pn

    return pn(value)


def exam_cells(exam) -> tuple[str, str, str, str, str]:
    """One table row, as on the printable page: values always with their units."""
    s = exam.study
    if exam.quantities:
        doses = "; ".join(f"{item['q'].short} {item['display']} {item['q'].unit}" for item in exam.quantities)
    else:
        doses = "none reported" if s.has_ionising_dose else "no ionising radiation"
    effective = "—"
    if exam.effective_dose_msv is not None:
        effective = f"{fmt.with_unit('effective_dose_msv', exam.effective_dose_msv)} ({exam.background})"
    when = timezone.localtime(s.study_datetime).strftime("%Y-%m-%d") if s.study_datetime else "—"
    return when, s.study_description or "—", exam.device_type, doses, effective


def portal_pdf(*, patient, exams, now: datetime | None = None) -> bytes:
    """The patient's own exam list as PDF bytes (``exams`` from ``selectors.portal_exams``).

    Set in the TrueType font; should that fail for any reason, made again in a core font (transliterated)."""
    now = now or timezone.now()
    try:
        return _render(patient, exams, now, embed_font=True)
    except Exception:
        logger.exception("portal PDF: rendering with the TrueType font failed; using a core font")
        return _render(patient, exams, now, embed_font=False)


def _render(patient, exams, now: datetime, *, embed_font: bool) -> bytes:
    from fpdf.fonts import FontFace

    source = settings.DOSEREG_BACKGROUND_SOURCE
    msv = settings.DOSEREG_BACKGROUND_MSV_PER_YEAR
    pdf = new_document(TITLE, embed_font=embed_font)
    t = pdf.t

    pdf.set_font(pdf.dr_family, "B", 16)
    pdf.cell(0, 9, t(TITLE), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(pdf.dr_family, "", 10)
    name = _pn(patient.name)
    line = (f"{name} · " if name else "") + f"created {timezone.localtime(now):%d %B %Y} · {len(exams)} examination(s) on record"
    pdf.multi_cell(0, 5, t(line), align="L", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)

    for head, body in CAVEATS:
        pdf.set_font(pdf.dr_family, "B", 9.5)
        pdf.write(4.6, t(head + " "))
        pdf.set_font(pdf.dr_family, "", 9.5)
        pdf.write(4.6, t(body))
        pdf.ln(6)
    pdf.set_font(pdf.dr_family, "", 8.5)
    pdf.multi_cell(0, 4.2, t(EFFECTIVE_DOSE_NOTE.format(source=source, msv=msv)), align="L", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)

    pdf.set_font(pdf.dr_family, "", 8.5)
    with pdf.table(col_widths=COL_WIDTHS, width=sum(COL_WIDTHS), text_align="LEFT", line_height=4.2,
                   padding=1.2, headings_style=FontFace(emphasis="BOLD", fill_color=(235, 239, 244))) as table:
        row = table.row()
        for h in HEADINGS:
            row.cell(t(h))
        for exam in exams:
            row = table.row()
            for value in exam_cells(exam):
                row.cell(t(value))
    if not exams:
        pdf.ln(2)
        pdf.multi_cell(0, 5, t("No examinations are recorded for you."), align="L", new_x="LMARGIN", new_y="NEXT")

    for exam in exams:  # the skin-reaction note of each fluoroscopy exam above the first peak-skin-dose level
        skin = getattr(exam, "skin", None)
        if not skin:
            continue
        when = exam.study.study_datetime
        pdf.ln(4)
        pdf.set_font(pdf.dr_family, "B", 11)
        pdf.multi_cell(0, 5.5, t(f"{skin['title']}: {exam.study.study_description or 'examination'}, "
                                 f"{f'{timezone.localtime(when):%d %B %Y}' if when else 'date not recorded'}"),
                       align="L", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(pdf.dr_family, "", 9.5)
        pdf.multi_cell(0, 4.6, t(skin["intro"]), align="L", new_x="LMARGIN", new_y="NEXT")
        for head, key in (("What this dose can mean", "band"), ("What to look for", "looks_like"), ("When", "when"),
                          ("Whom to call", "who")):
            pdf.set_font(pdf.dr_family, "B", 9.5)
            pdf.write(4.6, t(head + ": "))
            pdf.set_font(pdf.dr_family, "", 9.5)
            pdf.write(4.6, t(skin[key]))
            pdf.ln(5.6)
        pdf.set_font(pdf.dr_family, "", 8.5)
        pdf.multi_cell(0, 4.2, t(f"Based on {skin['source']}."), align="L", new_x="LMARGIN", new_y="NEXT")

    pdf.ln(4)
    pdf.set_font(pdf.dr_family, "B", 12)
    pdf.cell(0, 7, t("What the quantities mean"), new_x="LMARGIN", new_y="NEXT")
    for term, meaning in MEANINGS:
        pdf.set_font(pdf.dr_family, "B", 9.5)
        pdf.write(4.6, t(f"• {term}: "))
        pdf.set_font(pdf.dr_family, "", 9.5)
        pdf.write(4.6, t(meaning.format(source=source)))
        pdf.ln(5.6)
    pdf.ln(2)
    pdf.set_font(pdf.dr_family, "B", 9.5)
    pdf.multi_cell(0, 4.8, t(FINAL_NOTE), align="L", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
