"""The import layers (``.importlinter``): no dosereg app imports an app above it, and the RDSR parser does
not depend on Django. Runs import-linter's ``lint-imports`` from the environment running the tests."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_layers_contract_kept():
    exe = Path(sys.executable).parent / "lint-imports"
    assert exe.exists(), f"{exe} is missing: install import-linter (requirements.txt)"
    r = subprocess.run([str(exe), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"lint-imports exited {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "0 broken" in r.stdout, r.stdout
