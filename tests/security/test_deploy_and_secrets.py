"""`manage.py check --deploy` is clean in production mode; the repository holds no secrets."""
from __future__ import annotations

import os
import re
import secrets
import string
import subprocess
import sys

from tests.conftest import REPO, require


def test_check_deploy_is_clean_in_production_mode(tmp_path):
    key = "".join(secrets.choice(string.ascii_letters + string.digits + "!@#%^&*(-_=+)") for _ in range(50))
    env = dict(os.environ, DOSEREG_PRODUCTION="true", SECRET_KEY=key, ALLOWED_HOSTS="x",
               DOSEREG_VAR_DIR=str(tmp_path / "var"))
    env.pop("DEBUG", None)
    out = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "System check identified no issues" in out.stdout, out.stdout


def test_check_deploy_catches_an_insecure_configuration(tmp_path):
    """The check is not vacuous: DEBUG on and a weak key in production mode are reported."""
    env = dict(os.environ, DOSEREG_PRODUCTION="true", SECRET_KEY="short", ALLOWED_HOSTS="x", DEBUG="true",
               DOSEREG_VAR_DIR=str(tmp_path / "var"))
    out = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "security.W018" in out.stderr + out.stdout and "security.W009" in out.stderr + out.stdout


def _repo_files() -> list[str]:
    """Tracked files plus new ones that would be committed (not ignored)."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                         capture_output=True, timeout=60)
    require(out.returncode == 0, "a git checkout")
    return sorted({f for f in out.stdout.decode().split("\0") if f and (REPO / f).is_file()})


SECRET_PATTERNS = {
    "private key": re.compile(rb"-----BEGIN ((RSA|EC|DSA|OPENSSH|ENCRYPTED) )?PRIVATE KEY-----"),
    "AWS access key id": re.compile(rb"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret access key": re.compile(rb"aws_secret_access_key\s*[:=]\s*['\"]?[A-Za-z0-9/+=]{40}"),
    "GitHub token": re.compile(rb"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(rb"\bxox[abpr]-[A-Za-z0-9-]{10,}"),
    "Google API key": re.compile(rb"\bAIza[0-9A-Za-z_-]{35}\b"),
    "credentials in a URL": re.compile(rb"\b(postgres(ql)?|redis|amqp|smtp)s?://[^\s:@/'\"]+:[^\s@/'\"$]{3,}@"),
}
# configuration files: any literal value for a password/secret/key/token is a leak
CONFIG = re.compile(r"(^|/)(settings[^/]*\.py|docker-compose[^/]*\.ya?ml|Dockerfile|[^/]*\.(ini|cfg|toml|ya?ml|conf))$")
CONFIG_ASSIGN = re.compile(
    r"""^\s*["']?[A-Z_]*(PASSWORD|SECRET|TOKEN|API_KEY|PRIVATE_KEY)[A-Z_]*["']?\s*[:=]\s*["']([^"'$\s{}]{4,})["']""",
    re.M)
ALLOWED_CONFIG_VALUES = {"change-me", "changeme", "example"}


def test_no_secrets_in_the_repository():
    files = _repo_files()
    assert len(files) > 50
    problems = []
    for f in files:
        name = f.rsplit("/", 1)[-1]
        if name == ".env" or (name.startswith(".env.") and name != ".env.example"):
            problems.append(f"{f}: an .env file is in the repository")
        if name.endswith((".pem", ".key", ".p12", ".pfx", ".jks")) or name in ("id_rsa", "id_ed25519"):
            problems.append(f"{f}: a key/certificate store is in the repository")
        data = (REPO / f).read_bytes()
        if len(data) > 5_000_000 or b"\0" in data[:8000]:
            continue  # binary (DICOM fixtures and the like)
        for what, pat in SECRET_PATTERNS.items():
            m = pat.search(data)
            if m:
                problems.append(f"{f}: {what}: {m.group(0)[:40]!r}")
        if CONFIG.search(f):
            text = data.decode("utf-8", "replace")
            for m in CONFIG_ASSIGN.finditer(text):
                value = m.group(2).lower()
                if value not in ALLOWED_CONFIG_VALUES and not value.startswith("insecure-dev-key"):
                    problems.append(f"{f}: literal {m.group(1)} value {m.group(2)[:6]}...")
    assert not problems, "\n".join(problems)


def test_env_example_holds_placeholders_only_and_env_is_ignored():
    example = (REPO / ".env.example").read_text()
    for line in example.splitlines():
        if re.match(r"^(SECRET_KEY|POSTGRES_PASSWORD|EMAIL_HOST_PASSWORD|PSEUDONYM_SECRET)=", line):
            assert "change-me" in line or line.endswith("="), line
    out = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=REPO)
    assert out.returncode == 0, ".env must be git-ignored"
    docker_ignore = (REPO / ".dockerignore")
    if docker_ignore.exists():
        assert re.search(r"^\.env$", docker_ignore.read_text(), re.M), ".env must not be copied into the image"


def test_settings_secrets_come_from_the_environment():
    """The only literal secret in settings is the embedded demo's dev key, refused in production."""
    text = (REPO / "dosereg" / "settings.py").read_text()
    assert re.search(r'SECRET_KEY = env\("SECRET_KEY"\)', text)
    literals = re.findall(r'SECRET_KEY = "([^"]+)"', text)
    assert all(v.startswith("insecure-dev-key") for v in literals), literals
    assert 'raise ImproperlyConfigured("SECRET_KEY must be set in production")' in text
    for name in ("EMAIL_HOST_PASSWORD", "PSEUDONYM_SECRET"):
        assert re.search(rf'{name} = env\("{name}", ""\)', text), name
