"""CSV and XLSX exports that stream in constant memory (100k+ rows).

CSV: StreamingHttpResponse over a server-side cursor (``.iterator()``).
XLSX: openpyxl write-only workbook written to a temporary file, then streamed.
Text cells that a spreadsheet would run as a formula are neutralised. Numbers stay numbers in the unit
named by the column, rounded to 9 significant figures (``dosereg.formatting.machine``).
"""
from __future__ import annotations

import csv
import re
import tempfile
from collections.abc import Iterable, Iterator
from datetime import datetime

from django.db.models import F, OuterRef, Subquery
from django.http import FileResponse, StreamingHttpResponse

from dosereg import formatting as fmt
from dosereg.access.scope import EVERY_SITE, SiteScope
from dosereg.protocols.models import ProtocolMapping
from dosereg.registry.models import IrradiationEvent

from .selectors import audit_studies

CHUNK = 2000


class _Echo:
    def write(self, value):
        return value


# control characters other than tab, line feed and carriage return: XML 1.0 (XLSX) cannot hold them (openpyxl
# raises IllegalCharacterError) and no spreadsheet shows them; they are removed from every exported text
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _safe(value):
    if isinstance(value, float):  # numbers stay numbers (unit in the column name), float noise removed
        return fmt.machine(value)
    if isinstance(value, str):
        value = CONTROL_CHARS.sub("", value)
        if value[:1] in ("=", "+", "-", "@", "\t", "\r"):
            return "'" + value
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return "" if value is None else value


def csv_response(filename: str, header: list[str], rows: Iterable[Iterable]) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())

    def stream() -> Iterator[str]:
        yield "\ufeff" + writer.writerow([_safe(h) for h in header])  # BOM: Excel opens UTF-8 (µ, ·, ²) correctly
        for row in rows:
            yield writer.writerow([_safe(v) for v in row])

    resp = StreamingHttpResponse(stream(), content_type="text/csv; charset=utf-8")
    resp["Content-Disposition"] = f'attachment; filename="{filename}"'
    resp["Cache-Control"] = "no-store"
    return resp


def xlsx_response(filename: str, header: list[str], rows: Iterable[Iterable], sheet: str = "data") -> FileResponse:
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(CONTROL_CHARS.sub("", sheet)[:31] or "data")
    ws.append([_safe(h) for h in header])
    for row in rows:
        out = []
        for v in row:
            if isinstance(v, datetime):
                out.append(v.replace(tzinfo=None) if v.tzinfo is not None else v)  # Excel has no time zones (UTC)
            else:
                out.append(_safe(v))
        ws.append(out)
    tmp = tempfile.TemporaryFile(suffix=".xlsx")
    wb.save(tmp)
    tmp.seek(0)
    resp = FileResponse(tmp, as_attachment=True, filename=filename,
                        content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    resp["Cache-Control"] = "no-store"
    return resp


STUDY_HEADER = [
    "study_datetime", "device", "modality", "study_description", "standard_name", "accession_number",
    "kap_gy_cm2", "ka_r_gy", "fluoro_time_s", "ctdivol_max_mgy", "dlp_total_mgy_cm", "events",
    "patient_weight_kg", "patient_age_years",
]


def _protocol_studies(*, since, until, modality: str = "", device_id: int | None = None, scope: SiteScope = EVERY_SITE):
    return audit_studies(since=since, until=until, modality=modality, device_id=device_id).filter(scope.study_q())


def protocol_study_patient_ids(**filters) -> list[int]:
    """The patients whose studies ``protocol_study_rows(**filters)`` exports (for the audit trail)."""
    return list(_protocol_studies(**filters).exclude(patient_id=None).values_list("patient_id", flat=True)
                .order_by().distinct())


def protocol_study_rows(*, since, until, modality: str = "", device_id: int | None = None,
                        scope: SiteScope = EVERY_SITE) -> Iterator[tuple]:
    std = Subquery(
        ProtocolMapping.objects.filter(source_name=OuterRef("study_description"), modality=OuterRef("procedure_modality"))
        .values("standard_name__name")[:1]
    )
    qs = (
        _protocol_studies(since=since, until=until, modality=modality, device_id=device_id, scope=scope)
        .annotate(std_name=std, device_name=F("device__display_name"))
        .order_by("study_datetime", "pk")
        .values_list("study_datetime", "device_name", "procedure_modality", "study_description", "std_name",
                     "accession_number", "dap_total_gy_cm2", "dose_rp_max_plane_gy", "fluoro_time_total_s",
                     "ctdivol_max_mgy", "dlp_total_mgy_cm", "event_count", "patient_weight_kg", "patient_age_years")
    )
    return qs.iterator(chunk_size=CHUNK)


EVENT_HEADER = [
    "study_datetime", "device", "study_description", "event_datetime", "event_type", "plane", "protocol",
    "fluoro_mode", "pulse_rate_per_s", "number_of_frames", "irradiation_duration_s", "dose_mode", "kvp",
    "tube_current_ma", "collimated_field_area_m2", "kap_gy_cm2", "ka_r_gy",
]


def _technique_events(*, since, until, device_id: int | None = None, scope: SiteScope = EVERY_SITE):
    qs = IrradiationEvent.objects.filter(
        study__study_datetime__gte=since, study__study_datetime__lt=until, study__procedure_modality__in=("RF", "XA")
    ).filter(scope.study_q("study__"))
    if device_id:
        qs = qs.filter(study__device_id=device_id)
    return qs


def technique_event_patient_ids(**filters) -> list[int]:
    """The patients whose events ``technique_event_rows(**filters)`` exports (for the audit trail)."""
    return list(_technique_events(**filters).exclude(study__patient_id=None).values_list("study__patient_id", flat=True)
                .order_by().distinct())


def technique_event_rows(*, since, until, device_id: int | None = None, scope: SiteScope = EVERY_SITE) -> Iterator[tuple]:
    qs = _technique_events(since=since, until=until, device_id=device_id, scope=scope)
    qs = qs.order_by("study_id", "pk").values_list(
        "study__study_datetime", "study__device__display_name", "study__study_description", "datetime", "event_type",
        "plane", "protocol", "fluoro_mode", "pulse_rate_per_s", "number_of_frames", "irradiation_duration_s",
        "dose_mode", "kvp", "tube_current_ma", "collimated_field_area_m2", "dap_gy_cm2", "dose_rp_gy",
    )
    return qs.iterator(chunk_size=CHUNK)


SUMMARY_HEADER = ["device", "modality", "standard_name", "age_band", "study_description_unmapped", "procedures", "sample_too_small", "quantity", "unit", "n",
                  "q1", "median", "q3", "drl_set", "drl_value", "median_over_drl"]


def protocol_summary_rows(audit: dict) -> Iterator[tuple]:
    for r in audit["rows"]:
        for q in r["quantities"]:
            mapped = bool(r.get("family") or r["standard_name"])
            base = (r["device"], r["modality"], str(r.get("label") or "(unmapped)") if mapped else "(unmapped)",
                    r.get("age_band_label", ""), "" if mapped else r.get("description", ""), r["n"], "yes" if r["too_small"] else "no", q["label"], q["unit"], q["n"], q["q1"], q["median"], q["q3"])
            if q["drls"]:
                for c in q["drls"]:
                    yield base + (c["drl"].drl_set.name, c["drl"].value, c["ratio"])
            else:
                yield base + ("", "", "")


PORTAL_HEADER = ["date", "procedure", "device_type", "kap_gy_cm2", "ka_r_gy", "fluoro_time_min_s", "ctdivol_mgy",
                 "dlp_mgy_cm", "sar_w_kg", "effective_dose_estimate_msv", "background_comparison"]


def portal_rows(exams) -> Iterator[tuple]:
    for e in exams:
        s = e.study
        sar = next((q["value"] for q in e.quantities if q["q"].key == "sar_w_kg"), None)
        yield (
            s.study_datetime.date().isoformat() if s.study_datetime else "", s.study_description, e.device_type,
            s.dap_total_gy_cm2, s.dose_rp_max_plane_gy,
            fmt.minsec(s.fluoro_time_total_s, missing=""), s.ctdivol_max_mgy, s.dlp_total_mgy_cm, sar,
            e.effective_dose_msv, e.background,
        )


HISTORY_HEADER = ["study_datetime", "accession_number", "modality", "device", "study_description", "ionising",
                  "kap_gy_cm2", "ka_r_gy", "fluoro_time_s", "ctdivol_max_mgy", "dlp_total_mgy_cm", "events",
                  "pregnancy_status", "sar_w_kg", "study_instance_uid"]


def history_rows(studies) -> Iterator[tuple]:
    for s in studies:
        mr = list(s.mr_exams.all())
        yield (s.study_datetime, s.accession_number, s.procedure_modality, str(s.device) if s.device else "",
               s.study_description, "yes" if s.has_ionising_dose else "no", s.dap_total_gy_cm2, s.dose_rp_max_plane_gy,
               s.fluoro_time_total_s, s.ctdivol_max_mgy, s.dlp_total_mgy_cm, s.event_count, s.effective_pregnancy_status,
               mr[0].sar_w_kg if mr else None, s.study_instance_uid)
