"""A real Orthanc (Debian's package, with its DICOMweb plugin) as the hospital PACS in tests.

Locked down as docs/architecture.md "Peers in tests and benchmarks" says: HTTP on loopback only (``RemoteAccessAllowed``
false), its own storage folder and free ports, DICOM callers admitted only as configured modalities from their
configured host (``DicomCheckModalityHost``; every ``DicomAlwaysAllow*`` off), ``TCP_NODELAY=1``. Test data is
loaded through the REST API (``POST /instances``), never by C-STORE from an unknown caller.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
START_TIMEOUT = 20.0  # seconds until /system must answer


@dataclass
class LoadedStudy:
    study_uid: str
    sop_uids: list[str] = field(default_factory=list)


class Orthanc:
    """One Orthanc process: ``start()``, ``stop()`` (and ``start()`` again: same storage, same ports)."""

    def __init__(
        self,
        program: str,
        workdir: Path,
        *,
        http_port: int,
        dicom_port: int,
        aet: str = "ORTHANC",
        radshare_aet: str = "RADSHARE",
        radshare_port: int | None = None,
        extra_config: dict[str, Any] | None = None,
    ) -> None:
        self.program = program
        self.workdir = workdir
        self.http_port = http_port
        self.dicom_port = dicom_port
        self.aet = aet
        self.radshare_aet = radshare_aet
        self.radshare_port = radshare_port
        self.extra_config = dict(extra_config or {})
        self.storage = workdir / "storage"
        self.config_path = workdir / "orthanc.json"
        self.log_path = workdir / "orthanc.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.studies: dict[str, LoadedStudy] = {}  # by name given at load time
        self.files: dict[
            str, bytes
        ] = {}  # SOP Instance UID -> the bytes Orthanc stores (GET /instances/{id}/file)
        self.sha256: dict[str, str] = {}
        self._ids: dict[str, str] = {}  # SOP Instance UID -> Orthanc's instance id
        self.storage.mkdir(parents=True, exist_ok=True)
        self.write_config()

    # --- process -------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def write_config(self) -> None:
        modalities: dict[str, Any] = {}
        if self.radshare_port is not None:
            modalities["radshare"] = [self.radshare_aet, "127.0.0.1", self.radshare_port]
        config = {
            "Name": "radshare-test-pacs",
            "StorageDirectory": str(self.storage),
            "IndexDirectory": str(self.storage),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckModalityHost": True,
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowEcho": False,
            "DicomAlwaysAllowStore": False,
            "DicomAlwaysAllowFind": False,
            "DicomAlwaysAllowMove": False,
            "DicomAlwaysAllowGet": False,
            "DicomModalities": modalities,
            "DicomScuTimeout": 10,
            "SynchronousCMove": True,
            "MaximumStorageCacheSize": 0,  # read every file from disk: a test may remove one
            "HttpCompressionEnabled": False,
            "SaveJobs": False,
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
            **self.extra_config,
        }
        self.config_path.write_text(json.dumps(config, indent=2))

    def start(self) -> None:
        assert self.process is None, "already running"
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(  # our own test peer
                [self.program, str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "TCP_NODELAY": "1"},
                cwd=self.workdir,
            )
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited at start ({self.process.returncode}): {self.log_tail()}")
            try:
                # 401: up, with authentication enabled
                if requests.get(f"{self.url}/system", timeout=1).status_code in (200, 401):
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer within {START_TIMEOUT:g} s: {self.log_tail()}")

    def stop(self, *, graceful: bool = True) -> None:
        """Terminate (Orthanc takes ~3.5 s to shut down), then kill; or kill at once. Only this process."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)  # in case a test left it paused
        if graceful:
            process.terminate()
            try:
                process.wait(timeout=10)
                return
            except subprocess.TimeoutExpired:
                pass
        process.kill()
        process.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: the listening sockets stay open but nothing answers (a hung PACS)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # --- REST ----------------------------------------------------------------------------------------------

    def rest(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        response = requests.request(method, f"{self.url}{path}", timeout=30, **kwargs)
        response.raise_for_status()
        return response

    def register_radshare(self, port: int) -> None:
        """Make radshare's storage SCP (on ``port``) Orthanc's C-MOVE destination, now and after a restart."""
        self.radshare_port = port
        self.write_config()
        self.rest(
            "PUT", "/modalities/radshare", json={"AET": self.radshare_aet, "Host": "127.0.0.1", "Port": port}
        )

    def upload(self, data: bytes, *, study: str) -> str:
        """POST one Part 10 file; remember what Orthanc stores. Returns the SOP Instance UID."""
        answer = self.rest("POST", "/instances", data=data).json()
        instance_id = answer["ID"]
        tags = self.rest("GET", f"/instances/{instance_id}/simplified-tags").json()
        sop_uid, study_uid = tags["SOPInstanceUID"], tags["StudyInstanceUID"]
        stored = self.rest("GET", f"/instances/{instance_id}/file").content
        self._ids[sop_uid] = instance_id
        self.files[sop_uid] = stored
        self.sha256[sop_uid] = hashlib.sha256(stored).hexdigest()
        loaded = self.studies.setdefault(study, LoadedStudy(study_uid))
        assert loaded.study_uid == study_uid, "one name, one study"
        if sop_uid not in loaded.sop_uids:
            loaded.sop_uids.append(sop_uid)
        return str(sop_uid)

    def storage_file(self, sop_uid: str) -> Path:
        """Where Orthanc keeps an instance's file (its attachment's UUID, two folder levels)."""
        info = self.rest("GET", f"/instances/{self._ids[sop_uid]}/attachments/dicom/info").json()
        uuid = info["Uuid"]
        return self.storage / uuid[0:2] / uuid[2:4] / uuid
