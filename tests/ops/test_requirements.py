"""Every third-party import is named in the requirements a fresh virtual environment installs.

CI builds a fresh virtual environment on every run (.ci/run), so a missing package fails there too; this test
names the culprit directly and also catches a runtime import declared only among the test requirements
(the Docker image installs requirements.txt alone).

- dosereg/ and dicom_listener/ (and the dotted paths in settings: apps, middleware) -> requirements.txt
- tests/ and bench/ -> requirements.txt or requirements-test.txt
  (bench/bench_openrem.py drives OpenREM in a virtual environment of its own and imports nothing third-party)
"""
from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import sys
from pathlib import Path

from tests.conftest import REPO

RUNTIME_DIRS = ("dosereg", "dicom_listener")
DEV_DIRS = ("tests", "bench")
LOCAL = {"dosereg", "dicom_listener", "tests", "bench"}
# Run by name rather than imported: the production web server (README, Dockerfile, docker-compose.yml).
RUNTIME_COMMANDS = {"gunicorn"}
# Loaded by name: the pytest plugin that reads DJANGO_SETTINGS_MODULE in pytest.ini.
TEST_PLUGINS = {"pytest_django"}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(path: Path) -> set[str]:
    """Distribution names in a requirements file, following ``-r other.txt``."""
    names: set[str] = set()
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith(("-r ", "--requirement ")):
            names |= declared(path.parent / line.split(None, 1)[1])
            continue
        m = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
        assert m, f"{path.name}: cannot read {raw!r}"
        names.add(_normalise(m.group(0)))
    return names


def top_level_imports(path: Path) -> set[str]:
    """Absolute imports of one file, minus the modules next to it (bench/ scripts import their siblings)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    siblings = {p.stem for p in path.parent.glob("*.py")} | {p.name for p in path.parent.iterdir() if p.is_dir()}
    return {m for m in found if m not in siblings}


def third_party(dirs: tuple[str, ...]) -> dict[str, set[str]]:
    """{top-level module: files importing it} for the third-party imports under ``dirs``."""
    out: dict[str, set[str]] = {}
    for d in dirs:
        for path in sorted((REPO / d).rglob("*.py")):
            if path.name == "bench_openrem.py" or ".venv" in path.parts:
                continue
            for mod in top_level_imports(path):
                if mod in sys.stdlib_module_names or mod in LOCAL or mod == "__future__":
                    continue
                out.setdefault(mod, set()).add(str(path.relative_to(REPO)))
    return out


def settings_modules() -> set[str]:
    from django.conf import settings

    return {entry.split(".")[0] for entry in [*settings.INSTALLED_APPS, *settings.MIDDLEWARE]} - LOCAL


def _missing(modules: dict[str, set[str]], allowed: set[str]) -> list[str]:
    providers = importlib.metadata.packages_distributions()
    problems = []
    for mod, files in sorted(modules.items()):
        if importlib.util.find_spec(mod) is None:
            problems.append(f"{mod} (imported by {', '.join(sorted(files)[:3])}) is not installed")
            continue
        dists = {_normalise(d) for d in providers.get(mod, [])}
        if not dists & allowed:
            problems.append(f"{mod} (imported by {', '.join(sorted(files)[:3])}; distribution "
                            f"{', '.join(sorted(dists)) or '?'}) is not named in the requirements")
    return problems


def test_runtime_imports_are_in_requirements_txt():
    runtime = declared(REPO / "requirements.txt")
    modules = third_party(RUNTIME_DIRS)
    for mod in settings_modules() | RUNTIME_COMMANDS:
        modules.setdefault(mod, set()).add("dosereg/settings.py" if mod not in RUNTIME_COMMANDS else "Dockerfile")
    # the scan found the packages we know the code uses: it reads the code, not an empty list
    assert {"django", "celery", "pydicom", "pynetdicom", "rest_framework", "whitenoise"} <= set(modules), sorted(modules)
    assert _missing(modules, runtime) == []


def test_test_and_bench_imports_are_in_the_requirements():
    allowed = declared(REPO / "requirements-test.txt")
    assert declared(REPO / "requirements.txt") <= allowed, "requirements-test.txt must include requirements.txt (-r)"
    modules = third_party(DEV_DIRS)
    for mod in TEST_PLUGINS:
        modules.setdefault(mod, set()).add("pytest.ini")
    assert {"pytest", "playwright", "cryptography", "aiosmtpd"} <= set(modules), sorted(modules)
    assert _missing(modules, allowed) == []


def test_pixel_data_decoding_is_installable():
    """pydicom decodes pixel data (tests/rdsr/test_builder.py) only with numpy, which nothing imports by name."""
    assert "numpy" in declared(REPO / "requirements-test.txt")
    assert importlib.util.find_spec("numpy") is not None


def test_a_missing_import_is_reported(tmp_path):
    """The check itself: an import of a package nobody declared is named, with the file that imports it."""
    (tmp_path / "mod.py").write_text("import yaml\nfrom pydicom import dcmread\nimport os, json\nfrom . import sibling\n")
    mods = top_level_imports(tmp_path / "mod.py")
    assert mods == {"yaml", "pydicom", "os", "json"}
    problems = _missing({"yaml": {"x.py"}, "pydicom": {"x.py"}}, declared(REPO / "requirements.txt"))
    assert len(problems) == 1 and problems[0].startswith("yaml (imported by x.py; distribution pyyaml)"), problems
