"""mypy with django-stubs (mypy.ini) reports no error in dosereg/ and dicom_listener/: every module is checked (the
former ratchet of ``ignore_errors`` modules is empty and must stay so). Runs mypy from the environment running the tests."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_reports_no_errors():
    r = subprocess.run([sys.executable, "-m", "mypy", "dosereg", "dicom_listener"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"mypy exited {r.returncode}\n{r.stdout}\n{r.stderr}"


def test_no_module_is_exempt_from_type_checking():
    text = (ROOT / "mypy.ini").read_text()
    assert "ignore_errors" not in text, "a module was exempted from mypy in mypy.ini"
