"""The README's two commands on a fresh machine: the Makefile builds its own virtual environment and says what to
do when stock Debian's python3 has no venv module (the python3-venv package)."""
from __future__ import annotations

import os
import shutil
import subprocess

from tests.conftest import REPO, require


def _make(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    require(shutil.which("make") is not None, "GNU make")
    return subprocess.run(["make", "--no-print-directory", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


def test_without_the_venv_module_make_says_how_to_install_it(tmp_path):
    """What Debian's python3 does without python3-venv: `-m venv` leaves a half-made folder and fails. Not root
    (a fake `id`), so the Makefile must not apt-get: it removes the half-made folder and explains."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "id").write_text("#!/bin/sh\necho 1000\n")
    (bin_dir / "apt-get").write_text(f"#!/bin/sh\ntouch {tmp_path}/apt-get-ran\nexit 1\n")
    (bin_dir / "python3").write_text(
        "#!/bin/sh\n"
        '[ "$1 $2" = "-m venv" ] || exit 2\n'
        'mkdir -p "$3/bin" && touch "$3/pyvenv.cfg"\n'
        'echo "The virtual environment was not created successfully because ensurepip is not available." >&2\n'
        "exit 1\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    venv = tmp_path / "venv"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    r = _make("venv", f"VENV={venv}", f"PYTHON3={bin_dir / 'python3'}", env=env)
    assert r.returncode != 0
    assert "sudo apt-get install python3-venv" in r.stdout, r.stdout + r.stderr
    assert not venv.exists(), "the half-made virtual environment must not be taken for a working one"
    assert not (tmp_path / "apt-get-ran").exists()


def test_both_commands_use_the_project_virtual_environment(tmp_path):
    venv = tmp_path / "venv"
    env = dict(os.environ)
    for target, expected in (("demo", f"{venv}/bin/python manage.py demo"), ("test", f"PYTHON={venv}/bin/python bash scripts/test.sh")):
        r = _make("-n", target, f"VENV={venv}", env=env)
        assert r.returncode == 0, r.stderr
        assert f"-m venv {venv}" in r.stdout and f"{venv}/bin/python -m pip install" in r.stdout, r.stdout
        assert "-r requirements-test.txt" in r.stdout and expected in r.stdout, r.stdout
    assert not venv.exists()  # -n: nothing was run
