"""Default reportable-event rules (seeded by migration 0004; a site edits them as new versions in the admin)."""
from __future__ import annotations

from typing import Any

DEFAULT_RULES: list[dict[str, Any]] = [
    dict(key="tjc-fluoro-15gy", title="Fluoroscopy skin dose review level: 15 Gy to a single field", jurisdiction="The Joint Commission (US), where a hospital adopts it",
         category="tissue_reaction", quantity="skin_gy", threshold=15.0, unit="Gy", window_days=365, verification="◐",
         source="The Joint Commission, reviewable sentinel event (2005): prolonged fluoroscopy with cumulative dose > 1500 rad "
                "(15 Gy) to a single field, over 6 to 12 months (JAOCR; AAPM comment letter to JCAHO, 8 Jan 2006). TJC has since "
                "replaced the numeric trigger with fluoroscopy-caused permanent tissue injury (year of change not verified); many "
                "hospitals keep 15 Gy peak skin dose as an internal investigation level."),
    dict(key="euratom-art63", title="Significant unintended or accidental exposure", jurisdiction="EU: Council Directive 2013/59/Euratom, as transposed nationally",
         category="unintended", quantity="", threshold=None, unit="", window_days=None, verification="◐",
         source="Council Directive 2013/59/Euratom, Art. 63(c)-(e): record and analyse accidental or unintended exposures; "
                "inform the referrer, practitioner and patient of clinically significant ones; notify the competent authority of "
                "significant events as national law defines."),
    dict(key="ct-protocol-range", title="CT protocol's expected dose range exceeded", jurisdiction="The Joint Commission (US) diagnostic imaging standards",
         category="protocol_range", quantity="", threshold=None, unit="", window_days=None, verification="◐",
         source="The Joint Commission diagnostic imaging requirements: CT protocols carry expected dose-index ranges; "
                "exceedances are reviewed (paraphrase, not re-read in the primary source)."),
]


def seed(apps, schema_editor=None) -> None:
    ReportableRule = apps.get_model("cases", "ReportableRule")
    for r in DEFAULT_RULES:
        if not ReportableRule.objects.filter(key=r["key"]).exists():
            ReportableRule.objects.create(version=1, active=True, note="default (seeded by migration)", **r)
