"""A real Orthanc (Debian package ``orthanc``) on loopback ports, configured by the test."""
from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

ORTHANC = "/usr/sbin/Orthanc"


class Orthanc:
    def __init__(self, workdir: Path, dicom_port: int, http_port: int, modalities: dict[str, list]):
        self.workdir, self.dicom_port, self.http_port = workdir, dicom_port, http_port
        self.ae_title = "ORTHANC"
        self.config = {
            "Name": "dosereg-test",
            "StorageDirectory": str(workdir / "storage"),
            "IndexDirectory": str(workdir / "index"),
            "DicomAet": self.ae_title,
            "DicomPort": dicom_port,
            "HttpPort": http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": True,
            "DicomCheckCalledAet": False,
            "DicomCheckModalityHost": False,
            "DicomModalities": modalities,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomScuTimeout": 30,
            "UnknownSopClassAccepted": True,
            "StorageAccessOnFind": "Always",
            "Plugins": [],
            "SaveJobs": False,
            "ExecuteLuaEnabled": False,
            "HttpServerEnabled": True,
        }
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 30.0) -> None:
        (self.workdir / "storage").mkdir(parents=True, exist_ok=True)
        (self.workdir / "index").mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "orthanc.json"
        cfg.write_text(json.dumps(self.config, indent=2))
        self.log = open(self.workdir / "orthanc.log", "ab")
        self.proc = subprocess.Popen([ORTHANC, "--no-jobs", str(cfg)], stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=self.workdir)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                self.get("/system")
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise TimeoutError(f"Orthanc did not answer /system:\n{self.logs()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def logs(self) -> str:
        path = self.workdir / "orthanc.log"
        return path.read_text(errors="replace")[-6000:] if path.exists() else ""

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return json.loads(r.read())

    def upload(self, path: Path) -> dict:
        req = urllib.request.Request(self.url + "/instances", data=Path(path).read_bytes(), method="POST",
                                     headers={"Content-Type": "application/dicom"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def held_instances(self) -> list[dict]:
        """What Orthanc actually holds: StudyInstanceUID, SOPInstanceUID, SOPClassUID per instance."""
        out = []
        for oid in self.get("/instances"):
            tags = self.get(f"/instances/{oid}/simplified-tags")
            out.append({k: tags.get(k, "") for k in ("StudyInstanceUID", "SOPInstanceUID", "SOPClassUID", "StudyDate")})
        return out
