"""docker-compose.yml is valid for this project (no Docker engine needed).

Every service's command and health check exists in the project (manage.py commands resolve,
the Celery app and the WSGI application import), every service is documented in the README,
every ${VARIABLE} is documented in .env.example, and no secret is committed.
"""
from __future__ import annotations

import importlib
import re
import shlex
import subprocess

import pytest
import yaml
from django.core.management import get_commands, load_command_class

from tests.conftest import REPO

APP_SERVICES = {"migrate", "web", "worker", "skin-worker", "beat", "listener"}
VAR = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def readme_section() -> str:
    text = (REPO / "README.md").read_text()
    assert "## Production deployment" in text
    section = text.split("## Production deployment", 1)[1]
    return re.split(r"\n## ", section, maxsplit=1)[0]


def interpolate(arg: str) -> str:
    """${VAR:-default} -> default (what compose does with an unset variable)."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", arg)


def check_command(argv: list[str]) -> str:
    """Assert the command exists in the project; return its documented core form."""
    argv = [interpolate(a) for a in argv]
    prog = argv[0]
    if prog == "python":
        assert argv[1] == "manage.py", argv
        name = argv[2]
        commands = get_commands()
        assert name in commands, f"manage.py {name} is not a command of this project"
        parser = load_command_class(commands[name], name).create_parser("manage.py", name)
        parser.parse_args(argv[3:])  # the options exist (argparse exits on an unknown one)
        return f"python manage.py {name}"
    if prog == "celery":
        app_path = argv[argv.index("-A") + 1]
        from celery import Celery
        from celery.app.utils import find_app

        assert isinstance(find_app(app_path), Celery), f"celery -A {app_path} finds no Celery app"
        sub = next(a for a in argv[argv.index("-A") + 2:] if not a.startswith("-"))
        assert sub in ("worker", "beat"), sub
        if sub == "worker" and "-Q" in argv:
            from django.conf import settings

            queues = argv[argv.index("-Q") + 1].split(",")
            routed = {settings.CELERY_TASK_DEFAULT_QUEUE} | {r["queue"] for r in settings.CELERY_TASK_ROUTES.values()}
            assert set(queues) <= routed and queues, "the worker consumes a queue no task goes to"
        return f"celery -A {app_path} {sub}"
    if prog == "gunicorn":
        target = next(a for a in argv[1:] if ":" in a and not a.startswith("-") and "." in a.split(":")[0])
        mod, attr = target.split(":")
        assert callable(getattr(importlib.import_module(mod), attr)), target
        for a in argv:
            assert "$" not in a
        return f"gunicorn {target}"
    if prog == "redis-server":
        return prog
    raise AssertionError(f"unknown program {prog!r} in {argv}")


def test_services_commands_exist(compose):
    services = compose["services"]
    assert {"db", "redis", *APP_SERVICES} <= set(services)
    for name in APP_SERVICES:
        cmd = services[name]["command"]
        assert isinstance(cmd, list), f"{name}: use the exec form (a list)"
        check_command(cmd)
        assert services[name]["build"] == "." and services[name]["env_file"] == ".env"


def test_every_service_has_a_health_check_that_exists(compose):
    services = compose["services"]
    for name, svc in services.items():
        hc = svc.get("healthcheck") or {}
        if name == "migrate":
            assert hc.get("disable") is True and svc["restart"] == "no"
            continue
        test = hc.get("test")
        assert test, f"{name} has no health check"
        if name in APP_SERVICES:
            assert test[0] == "CMD"
            assert check_command(test[1:]) == "python manage.py healthcheck"
            assert test[-1] == name.split("-")[-1]  # --component <service> (skin-worker: a worker)
            assert hc["interval"] and hc["retries"]
    for name in APP_SERVICES - {"migrate"}:
        deps = services[name]["depends_on"]
        assert deps["db"]["condition"] == deps["redis"]["condition"] == "service_healthy"
        assert deps["migrate"]["condition"] == "service_completed_successfully"


def test_every_queue_a_task_goes_to_has_a_worker(compose):
    from django.conf import settings

    consumed = set()
    for svc in compose["services"].values():
        cmd = svc.get("command") or []
        if "worker" in cmd and "-Q" in cmd:
            consumed |= set(cmd[cmd.index("-Q") + 1].split(","))
    routed = {settings.CELERY_TASK_DEFAULT_QUEUE} | {r["queue"] for r in settings.CELERY_TASK_ROUTES.values()}
    assert routed <= consumed, f"no worker consumes {routed - consumed}"
    assert "skin" not in compose["services"]["worker"]["command"][compose["services"]["worker"]["command"].index("-Q") + 1]


def test_volumes_and_configuration(compose):
    services = compose["services"]
    assert {"pgdata", "spool"} <= set(compose["volumes"])
    assert "pgdata:/var/lib/postgresql/data" in services["db"]["volumes"]
    for name in ("worker", "skin-worker", "listener", "web"):  # the worker reads the originals the listener stored
        env = services[name]["environment"]
        assert f"spool:{env['SPOOL_DIR']}" in services[name]["volumes"]
        assert env["REDIS_URL"].startswith("redis://redis:") and "@db:5432/" in env["DATABASE_URL"]
        assert env["DOSEREG_PRODUCTION"] == "true"
    assert services["listener"]["environment"]["DICOM_PORT"] == "11112"
    assert services["listener"]["ports"][0].endswith(":11112")


def test_documented_in_readme(compose, readme_section):
    flat = " ".join(readme_section.split())
    for name in sorted(APP_SERVICES):
        core = check_command(compose["services"][name]["command"])
        assert core in flat, f"README 'Production deployment' does not show the {name} command ({core})"
        assert f"`{name}`" in readme_section, f"README does not name the {name} service"
    for component in ("web", "worker", "listener", "beat"):
        assert f"healthcheck --component {component}" in flat or "healthcheck --component web|worker" in flat
    assert "--scale worker=" in flat and ".env.example" in flat


def test_env_example_documents_every_variable_and_holds_no_secret(compose):
    raw = (REPO / "docker-compose.yml").read_text()
    example = (REPO / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, flags=re.M))
    used = set(VAR.findall(raw))
    assert used <= documented, f"not in .env.example: {sorted(used - documented)}"
    settings_src = (REPO / "dosereg" / "settings.py").read_text()
    for var in documented - used:
        assert re.search(rf'env\w*\("{var}"', settings_src), f".env.example documents {var}, which nothing reads"
    values = dict(re.findall(r"^([A-Z][A-Z0-9_]+)=(.*)$", example, flags=re.M))
    for secret in ("SECRET_KEY", "POSTGRES_PASSWORD"):
        assert values[secret].startswith("change-me"), f"{secret} in .env.example must be a placeholder"
    assert values.get("PSEUDONYM_SECRET", "") == ""
    tracked = subprocess.run(["git", "ls-files", ".env"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert tracked == "", ".env must never be committed"
    assert ".env" in (REPO / ".gitignore").read_text().split() and ".env" in (REPO / ".dockerignore").read_text().split()


def test_dockerfile_collects_static_where_settings_serve_it():
    text = (REPO / "Dockerfile").read_text()
    assert "collectstatic" in text and "DOSEREG_VAR_DIR=/app/var" in text
    assert "whitenoise.middleware.WhiteNoiseMiddleware" in (REPO / "dosereg" / "settings.py").read_text()
    assert re.search(r"^USER \w+", text, flags=re.M), "run as a non-root user"
    assert shlex.split("gunicorn dosereg.wsgi:application")[1] in text
