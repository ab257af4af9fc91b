"""Benchmark: DCMTK ``dsrdump`` vs :func:`dosereg.rdsr.extract_file` on the 316-event RDSR.

Usage::

    python bench/bench_parse.py [path/to/file.dcm] [--repeat N]

Prints best-of-N wall times for both and the ratio (extract / dsrdump).  The
project target is parse + DB store <= 2x dsrdump, so the parse alone should be well
under that.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dosereg.rdsr import extract_file  # noqa: E402

DEFAULT = Path(os.environ.get("DOSEREG_CORPUS", ROOT.parent / "shared" / "rdsr")) / (
    "philips_allura-xper_RF_316events_no-orientation-modifier.dcm"
)


def best_of(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", nargs="?", default=str(DEFAULT))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    path = args.path
    if not Path(path).exists():
        print(f"file not found: {path}", file=sys.stderr)
        return 2

    extract_file(path)  # warm-up: lazy imports / tables, page cache
    t_extract = best_of(lambda: extract_file(path), args.repeat)
    doc = extract_file(path)

    dsrdump = shutil.which("dsrdump")
    t_dsr = None
    if dsrdump:
        def run_dsr() -> None:
            subprocess.run([dsrdump, "-q", "-Ee", "-Ec", path], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
        run_dsr()
        t_dsr = best_of(run_dsr, args.repeat)

    print(f"file:          {path} ({Path(path).stat().st_size / 1e6:.2f} MB, {len(doc.events)} events)")
    if t_dsr is not None:
        print(f"dsrdump:       {t_dsr * 1000:8.1f} ms  (best of {args.repeat}, subprocess)")
    else:
        print("dsrdump:       not installed")
    print(f"extract_file:  {t_extract * 1000:8.1f} ms  (best of {args.repeat}, in-process)")
    if t_dsr:
        print(f"ratio extract/dsrdump: {t_extract / t_dsr:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
