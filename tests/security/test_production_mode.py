"""Issue #18: production is recognised without a separate flag (a DATABASE_URL and DEBUG off), refuses to
start with a missing or placeholder SECRET_KEY, and has its deploy settings on; the embedded demo and the
test runner still start. Each case is a fresh process reading dosereg.settings from its environment."""
from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import REPO

KEY = "Zq8-" + "r4nd0m-pr0duct10n-k3y-" * 3
SHOW = ("from django.conf import settings as s; "
        "print(s.PRODUCTION, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, "
        "s.SECURE_HSTS_SECONDS >= 31536000)")


def _env(tmp_path, **values) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DOSEREG_PRODUCTION", "SECRET_KEY", "DEBUG", "DATABASE_URL")}
    env.update(DJANGO_SETTINGS_MODULE="dosereg.settings", ALLOWED_HOSTS="x", DOSEREG_VAR_DIR=str(tmp_path / "var"))
    env.update({k: v for k, v in values.items() if v is not None})
    return env


def _run(env, code=SHOW):
    return subprocess.run([sys.executable, "-c", "import django; django.setup(); " + code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


PG = "postgres://dosereg@db.example.invalid:5432/dosereg"  # never connected to: settings only


def test_a_database_url_without_debug_is_production_and_needs_a_secret_key(tmp_path):
    out = _run(_env(tmp_path, DATABASE_URL=PG))
    assert out.returncode != 0 and "SECRET_KEY must be set in production" in out.stderr


def test_the_env_example_placeholder_key_is_refused(tmp_path):
    example = dict(re.findall(r"^([A-Z][A-Z0-9_]+)=(.*)$", (REPO / ".env.example").read_text(), flags=re.M))
    for placeholder in (example["SECRET_KEY"], "insecure-dev-key-only-for-the-embedded-demo-xxxx", " CHANGE-ME "):
        out = _run(_env(tmp_path, DATABASE_URL=PG, SECRET_KEY=placeholder))
        assert out.returncode != 0 and "SECRET_KEY is a placeholder" in out.stderr, (placeholder, out.stderr[-500:])
    # with the explicit flag too (docker compose sets it)
    out = _run(_env(tmp_path, DATABASE_URL=PG, SECRET_KEY=example["SECRET_KEY"], DOSEREG_PRODUCTION="true"))
    assert out.returncode != 0 and "SECRET_KEY is a placeholder" in out.stderr


def test_production_turns_on_the_deploy_settings_without_a_flag(tmp_path):
    out = _run(_env(tmp_path, DATABASE_URL=PG, SECRET_KEY=KEY))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True"] * 5, out.stdout


def test_check_deploy_is_clean_in_production_without_the_flag(tmp_path):
    env = _env(tmp_path, DATABASE_URL=PG, SECRET_KEY=KEY)
    out = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "System check identified no issues" in out.stdout, out.stdout + out.stderr


def test_embedded_demo_debug_and_explicit_opt_out_are_not_production(tmp_path):
    cases = {
        "embedded (SQLite, no key)": _env(tmp_path),
        "DEBUG on": _env(tmp_path, DATABASE_URL=PG, DEBUG="true"),
        "DOSEREG_PRODUCTION=false (a developer's PostgreSQL)": _env(tmp_path, DATABASE_URL=PG, DOSEREG_PRODUCTION="false"),
    }
    for what, env in cases.items():
        out = _run(env)
        assert out.returncode == 0, (what, out.stderr[-800:])
        assert out.stdout.split() == ["False"] * 5, (what, out.stdout)


def test_the_test_runner_is_not_production(settings):
    """This process has a DATABASE_URL (PostgreSQL) and DEBUG off, yet starts: the test runner is exempt, and the
    processes the tests start get DOSEREG_PRODUCTION=false (tests/conftest.py)."""
    assert settings.PRODUCTION is False and settings.SESSION_COOKIE_SECURE is False
    assert os.environ["DOSEREG_PRODUCTION"] == "false"


def test_documented_in_readme_and_env_example():
    readme = (REPO / "README.md").read_text()
    example = (REPO / ".env.example").read_text()
    assert "SECRET_KEY" in readme and "DEBUG" in readme
    assert re.search(r"production.*DATABASE_URL.*DEBUG|DATABASE_URL.*DEBUG.*production", " ".join(readme.split()),
                     re.I | re.S)
    assert re.search(r"^#.*refuses to start with this placeholder", example, re.M), "the .env.example says its key is refused"
