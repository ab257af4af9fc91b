#!/usr/bin/env python
"""Peak skin dose benchmark (on demand): a 316-event fluoroscopy procedure (builder-made, with the geometry
a Siemens AXIOM-Artis reports: angles, distances, table positions, field area, filters) through dosereg's parser
and the skin-dose engine, on each phantom. Prints wall time and the process's peak memory.

    python bench/bench_skin.py [N_EVENTS]

Then the patient history's summing (dosereg.skindose.summing): 24 procedures over a year with that map, the worst
60-day and 12-month periods found and their maps added (what the patient history does on each view).
"""
from __future__ import annotations

import datetime as dt
import random
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dosereg.rdsr import builder as b  # noqa: E402
from dosereg.rdsr.extract import extract_bytes  # noqa: E402
from dosereg.skindose import summing  # noqa: E402
from dosereg.skindose.engine import RoomSettings, compute, events_from_document  # noqa: E402


GEOMETRIES = 40


def procedure(n: int) -> bytes:
    rng = random.Random(316)
    # an interventional procedure: runs of pulsed fluoroscopy and acquisitions at a few dozen C-arm and table
    # positions (GEOMETRIES distinct ones, in runs), table positions to 0.1 mm as devices report them
    views = [dict(
        positioner_primary_angle_deg=float(rng.choice([-30, -15, 0, 0, 0, 15, 30, 45])),
        positioner_secondary_angle_deg=float(rng.choice([-20, 0, 0, 20])),
        distance_source_to_detector_mm=float(rng.choice([1000, 1100, 1200])), distance_source_to_isocenter_mm=785.0,
        table_longitudinal_position_mm=round(rng.uniform(-50, 50), 1), table_lateral_position_mm=round(rng.uniform(300, 700), 1),
        table_height_position_mm=round(rng.uniform(-50, 100), 1), collimated_field_area_m2=round(rng.uniform(0.005, 0.04), 4),
    ) for _ in range(GEOMETRIES)]
    events = []
    for i in range(n):
        fluoro = rng.random() < 0.8
        events.append(b.ProjectionEventSpec(
            event_type="fluoroscopy" if fluoro else "stationary", dose_rp_gy=rng.uniform(0.001, 0.03),
            dap_gy_cm2=rng.uniform(0.1, 3.0), kvp=float(rng.choice([70, 75, 80, 85, 90])),
            filters=[("copper", float(rng.choice([0.1, 0.2, 0.3])))], **views[(i * GEOMETRIES) // n]))
    spec = b.ProjectionRDSRSpec(study_datetime=dt.datetime(2026, 1, 5, 8), manufacturer="Siemens",
                                model="AXIOM-Artis", events=events)
    return b.to_bytes(b.build_projection_rdsr(spec))


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 316
    data = procedure(n)
    t0 = time.perf_counter()
    doc = extract_bytes(data)
    parse_s = time.perf_counter() - t0
    print(f"skin dose benchmark: {n} events, {len(data) / 1e6:.1f} MB RDSR, parsed in {parse_s * 1000:.0f} ms")
    maps = {}
    for phantom in ("plane", "cylinder", "human"):
        t0 = time.perf_counter()
        res = compute(events_from_document(doc), manufacturer=doc.device.manufacturer, model=doc.device.model,
                      room=RoomSettings(phantom=phantom), with_map=True)
        wall = time.perf_counter() - t0
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        psd = f"{res.psd_gy:.3g} Gy" if res.computable else f"not computable ({res.not_computable_reason})"
        print(f"  {phantom:8s} PSD {psd}; {len(res.events_used)} events used; {wall:.2f} s "
              f"(target <= 10 s: {wall / 10.0:.2f}x); peak RSS so far {rss_mb:.0f} MB (target < 1024 MB)")
        if res.computable and res.dose_map:
            maps[phantom] = (res.psd_gy, res.dose_map)
    for phantom, (psd_gy, cells) in maps.items():
        procs = [summing.ProcedureSkinDose(study_id=i, at=dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc) + dt.timedelta(days=15 * i),
                                           psd_gy=psd_gy, phantom=phantom, orientation="head_first_supine", cells=cells)
                 for i in range(24)]
        t0 = time.perf_counter()
        periods = [summing.worst_window(procs, days, with_cells=True) for days in (60, 365)]
        wall = time.perf_counter() - t0
        print(f"  summing {phantom:8s} {len(cells['dose_gy'])} skin cells x 24 procedures: worst 60-day and 12-month "
              f"periods " + ", ".join(f"{p.peak_gy:.3g} Gy ({len(p.study_ids)} procedures, {p.method})" for p in periods if p)
              + f" in {wall * 1000:.0f} ms")


if __name__ == "__main__":
    main()
