"""The pipeline sits above the apps it calls: none of them (nor the pure parser) imports it."""
from __future__ import annotations

import ast

from tests.conftest import REPO

BELOW = ("rdsr", "registry", "notifications", "exposure", "staff", "protocols", "audit")


def test_no_app_below_the_pipeline_imports_it():
    offenders = []
    for app in BELOW:
        for path in (REPO / "dosereg" / app).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                if any(n == "dosereg.pipeline" or n.startswith("dosereg.pipeline.") for n in names):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []
