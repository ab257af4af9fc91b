"""The study page's event rows, built in Python (``dose.event_rows``), are the markup the per-event row template drew:
the same cells, values and escaping for CT and projection events, with every value missing, a long or caret
description, a non-ASCII region and an event without a time."""
from __future__ import annotations

import datetime as dt
import re
from types import SimpleNamespace

import pytest
from django.template import Context, Template

# the row template as it was (templates/web/_study_event_row.html before the tag), rendered once per event
OLD_ROW = (
    '{% load dose %}{% if ct %}<tr data-type="{{ e.event_type }}" data-plane="{{ e.plane }}"><td>{{ e.datetime|time:"H:i:s"|default:"—" }}</td><td>{{ e.event_type|event_type }}</td><td class="small">{{ e.protocol|caret_free|truncatechars:30 }}</td><td class="small">{{ e.target_region|truncatechars:24 }}</td><td class="num">{{ e.kvp|num }}</td><td class="num">{{ e.tube_current_ma|num }}</td><td class="num">{{ e.ct_scanning_length_mm|num }}</td><td class="num">{{ e.ct_pitch_factor|num }}</td><td class="small">{{ e.ctdiw_phantom|words|default:"—" }}</td><td class="num">{{ e.ctdivol_mgy|num }}</td><td class="num">{{ e.dlp_mgy_cm|num }}</td></tr>\n'
    '{% else %}<tr data-type="{{ e.event_type }}" data-plane="{{ e.plane }}"><td>{{ e.datetime|time:"H:i:s"|default:"—" }}</td><td>{{ e.event_type|event_type }}</td><td>{{ e.plane }}</td><td class="small">{{ e.protocol|caret_free|truncatechars:30 }}</td><td class="small">{{ e.target_region|truncatechars:24 }}</td><td class="num">{{ e.kvp|num }}</td><td class="num">{{ e.tube_current_ma|num }}</td><td class="num">{{ e.pulse_rate_per_s|num }}</td><td class="num">{{ e.number_of_frames|default_if_none:"—" }}</td><td class="num">{{ e.irradiation_duration_s|num }}</td><td class="small">{{ e.dose_mode|default:e.fluoro_mode|default:"—" }}</td><td class="num">{{ e.dap_gy_cm2|num }}</td><td class="num">{{ e.dose_rp_gy|num }}</td></tr>{% endif %}\n'
)

FIELDS = dict(event_type="", plane="", datetime=None, protocol="", target_region="", kvp=None, tube_current_ma=None,
              ct_scanning_length_mm=None, ct_pitch_factor=None, ctdiw_phantom="", ctdivol_mgy=None, dlp_mgy_cm=None,
              pulse_rate_per_s=None, number_of_frames=None, irradiation_duration_s=None, dose_mode="", fluoro_mode="",
              dap_gy_cm2=None, dose_rp_gy=None)


def _events():
    at = dt.datetime(2026, 3, 2, 23, 59, 58, tzinfo=dt.timezone.utc)
    return [
        SimpleNamespace(**FIELDS),  # nothing reported
        SimpleNamespace(**{**FIELDS, "event_type": "ct_spiral", "plane": "single", "datetime": at,
                           "protocol": "Thorax^Routine^Adult <contrast> & more words than thirty",
                           "target_region": "Chest, abdomen and pelvis région", "kvp": 120.0, "tube_current_ma": 245.5,
                           "ct_scanning_length_mm": 412.04, "ct_pitch_factor": 0.984375, "ctdiw_phantom": "body_32",
                           "ctdivol_mgy": 12.3456, "dlp_mgy_cm": 1234.56}),
        SimpleNamespace(**{**FIELDS, "event_type": "fluoroscopy", "plane": "A", "datetime": at, "protocol": "Coro^LCA",
                           "target_region": "Heart", "kvp": 78.0, "tube_current_ma": 9.87654, "pulse_rate_per_s": 7.5,
                           "number_of_frames": 1234, "irradiation_duration_s": 0.000123, "fluoro_mode": "pulsed",
                           "dap_gy_cm2": 0.000456, "dose_rp_gy": 2.0}),
        SimpleNamespace(**{**FIELDS, "event_type": "stationary_acquisition", "plane": "B", "number_of_frames": 0,
                           "dose_mode": "high <dose>", "fluoro_mode": "pulsed"}),
    ]


def _norm(html: str) -> str:
    return re.sub(r">\s+<", "><", html.strip())


@pytest.mark.parametrize("ct", [True, False])
@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin"])
def test_event_rows_are_the_row_templates_markup(ct, tz, settings):
    from django.utils import timezone

    settings.TIME_ZONE = tz
    with timezone.override(tz):
        events = _events()
        old = "".join(Template(OLD_ROW).render(Context({"e": e, "ct": ct})) for e in events[1:3])
        new = Template("{% load dose %}{% event_rows events ct 1 3 %}").render(Context({"events": events, "ct": ct}))
        assert _norm(new) == _norm(old)
        old = "".join(Template(OLD_ROW).render(Context({"e": e, "ct": ct})) for e in events)
        new = Template("{% load dose %}{% event_rows events ct %}").render(Context({"events": events, "ct": ct}))
        assert _norm(new) == _norm(old)
        # escaped and cut as the template did: the description's "<contrast>" cut to 30 characters
        assert "Thorax Routine Adult &lt;contras…" in new and "<contra" not in new
        assert ("high &lt;dose&gt;" in new) != ct and "high <dose>" not in new
