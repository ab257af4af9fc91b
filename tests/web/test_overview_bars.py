"""The protocol audit's overview bars are drawn by a template tag in Python (hundreds per page): the same markup the
template loop drew, escaping included."""
from __future__ import annotations

import re

from django.template import Context, Template

LOOP = Template(
    "{% load dose l10n %}{% localize off %}{% for b in c.bars %}"
    """<text x="{{ c.left|add:'-6' }}" y="{{ b.ty }}" text-anchor="end" class="ov-label">{{ b.device|truncatechars:30 }} (n={{ b.n|localize }})</text>
      <a href="{{ browser_url }}?{{ b.query }}" data-overview-bar><title>{{ b.device }}: median {{ b.median|num }} {{ c.unit }} (Q1 {{ b.q1|num }}, Q3 {{ b.q3|num }}), {{ b.n|localize }} studies</title>
        <rect x="{{ c.left }}" y="{{ b.y }}" width="{{ b.w }}" height="{{ b.h }}" class="ov-bar{% if b.above %} ov-bar-above{% endif %}"/></a>
      <line x1="{{ b.q1x }}" x2="{{ b.q3x }}" y1="{{ b.cy }}" y2="{{ b.cy }}" class="ov-iqr"/>
      {% endfor %}{% endlocalize %}""")
TAG = Template("{% load dose l10n %}{% localize off %}{% overview_bars c browser_url %}{% endlocalize %}")


def _squash(html: str) -> str:
    return re.sub(r"\s+", " ", html).strip()


def test_the_tag_draws_what_the_template_loop_drew():
    bars = [
        {"device": "Room <1> & \"the long name of a mobile C-arm\"", "n": 12345, "median": 3.14159, "q1": 1.0,
         "q3": None, "y": 20, "ty": 34, "h": 18, "w": 120.5, "q1x": 250.0, "q3x": 301.2, "cy": 29.0, "above": True,
         "query": "device=3&standard=5&since=2025-12-06&until=2026-12-06"},
        {"device": "CT 2", "n": 7, "median": 0.00412, "q1": 0.003, "q3": 0.005, "y": 48, "ty": 62, "h": 18,
         "w": 1.0, "q1x": 250.7, "q3x": 251.3, "cy": 57.0, "above": False, "query": "device=4"},
    ]
    ctx = {"c": {"bars": bars, "left": 250, "unit": "Gy·cm²"}, "browser_url": "/studies/"}
    drawn = TAG.render(Context(ctx))
    assert _squash(drawn) == _squash(LOOP.render(Context(ctx)))
    assert "Room &lt;1&gt; &amp; &quot;the long name of …" in drawn and "ov-bar ov-bar-above" in drawn
    assert 'href="/studies/?device=3&amp;standard=5' in drawn and drawn.count("data-overview-bar") == 2


def test_the_box_plot_title_separates_its_numbers_by_commas_only():
    """The box plot's title lists min, Q1, median, Q3 and max separated by commas: no thousands separator inside a
    number; fluoroscopy time reads min:s, as everywhere."""
    from dosereg.web.templatetags.dose import boxplot

    q = {"key": "dlp_total_mgy_cm", "min": 812.0, "q1": 1020.0, "median": 1234.0, "q3": 1500.0, "max": 20400.0}
    assert "min 812, Q1 1020, median 1234, Q3 1500, max 20400" in boxplot(q)
    q = {"key": "fluoro_time_total_s", "min": 60.0, "q1": 125.0, "median": 725.0, "q3": 900.0, "max": 3725.0}
    assert "min 1:00, Q1 2:05, median 12:05, Q3 15:00, max 62:05" in boxplot(q)
