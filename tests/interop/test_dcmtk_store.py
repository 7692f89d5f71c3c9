"""DCMTK's storescu and echoscu against radshare's storage SCP (real processes on loopback).

What a PACS does in practice: send a whole study, send pydicom's sample files in their own (compressed)
transfer syntaxes, send the same study again, send from two associations at once, and call from a title or
host the SCP does not know.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import struct
import subprocess
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydicom
import pytest
from django.db.models import Sum
from pydicom.data import get_testdata_file
from pydicom.errors import InvalidDicomError

from radshare.audit.models import AuditEvent
from radshare.organisations.services import add_pacs_node
from radshare.studies.models import Instance, Patient, Series, Study
from radshare.studies.synthetic import FakePatient, ct_series, encode
from tests.conftest import require_program, storage_dir

pytestmark = [pytest.mark.interop, pytest.mark.django_db(transaction=True)]

CALLING = "CT_SCANNER"
PATIENT = FakePatient("INTEROP-1", "Interop^Test", dt.date(1971, 3, 4))
# Without TCP_NODELAY DCMTK waits ~44 ms (Nagle + delayed ACK) after every message.
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
TIMEOUT = 60  # seconds for any one DCMTK run


def _dcmtk(program: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # the exit status is asserted by each caller
        [require_program(program), *args], capture_output=True, text=True, timeout=TIMEOUT, env=DCMTK_ENV
    )


def _network_args(scp: Any, calling: str) -> list[str]:
    # -to/-ta/-td bound every network wait, so a silent SCP makes DCMTK fail, not hang.
    timeouts = ["-to", "10", "-ta", "10", "-td", "30"]
    return ["-aet", calling, "-aec", scp.ae_title, *timeouts, "127.0.0.1", str(scp.address[1])]


def storescu_args(
    scp: Any, files: Sequence[Path], *, calling: str = CALLING, extra: Sequence[str] = ()
) -> list[str]:
    return ["-v", *extra, *_network_args(scp, calling), *(str(f) for f in files)]


def storescu(
    scp: Any, files: Sequence[Path], *, calling: str = CALLING, extra: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    return _dcmtk("storescu", *storescu_args(scp, files, calling=calling, extra=extra))


def echoscu(scp: Any, *, calling: str = CALLING) -> subprocess.CompletedProcess[str]:
    return _dcmtk("echoscu", *_network_args(scp, calling))


def settle(scp: Any) -> None:
    """Wait until the SCP's association threads have ended (each writes its audit entry as it closes)."""
    for assoc in list(scp.server.active_associations):
        assoc.join(timeout=TIMEOUT)
        assert not assoc.is_alive(), "an association did not end"


def storage_files() -> list[Path]:
    return sorted((storage_dir() / "instances").rglob("*.dcm"))


def leftovers() -> list[Path]:
    return sorted((storage_dir() / "incoming").glob("*"))


def dataset_bytes(part10: bytes) -> bytes:
    """The data set of a Part 10 file: what follows preamble, 'DICM' and the file meta group (PS3.10 7.1)."""
    assert part10[128:132] == b"DICM"
    tag, vr, length = struct.unpack("<4s2sH", part10[132:140])
    assert (tag, vr, length) == (b"\x02\x00\x00\x00", b"UL", 4), "file meta group length comes first"
    (group_length,) = struct.unpack("<I", part10[140:144])
    return part10[144 + group_length :]


def write_study(folder: Path, *, count: int = 100, study_uid: str | None = None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, ds in enumerate(ct_series(PATIENT, count=count, size=64, study_uid=study_uid)):
        path = folder / f"ct{i:03d}.dcm"
        path.write_bytes(encode(ds))
        paths.append(path)
    return paths


def sop_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def sop_study_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def assert_study_complete(study: Study, files: Sequence[Path]) -> None:
    """Every file indexed exactly once, counters exact, one stored file per row, sizes adding up."""
    study.refresh_from_db()
    instances = Instance.objects.filter(series__study=study)
    assert study.number_of_instances == len(files)
    assert instances.count() == len(files)
    assert set(instances.values_list("sop_instance_uid", flat=True)) == {sop_uid(f) for f in files}
    assert study.number_of_series == Series.objects.filter(study=study).count() == 1
    assert Series.objects.get(study=study).number_of_instances == len(files)
    on_disk = storage_files()
    assert len(on_disk) == len(files)
    assert {p.relative_to(storage_dir() / "instances").as_posix() for p in on_disk} == set(
        instances.values_list("storage_key", flat=True)
    )
    assert (
        study.size
        == instances.aggregate(total=Sum("size"))["total"]
        == sum(p.stat().st_size for p in on_disk)
    )
    assert leftovers() == []


def study_snapshot(study: Study) -> dict[str, Any]:
    study.refresh_from_db()
    return {
        "study": (study.number_of_instances, study.number_of_series, study.size),
        "series": list(Series.objects.filter(study=study).values_list("pk", "number_of_instances", "size")),
        "instances": sorted(
            Instance.objects.filter(series__study=study).values_list(
                "pk", "sop_instance_uid", "storage_key", "sha256", "size"
            )
        ),
        "files": [(p, p.stat().st_size, p.stat().st_mtime_ns) for p in storage_files()],
        "patients": Patient.objects.count(),
    }


# --- a whole study ------------------------------------------------------------------------------


def test_storescu_sends_a_100_instance_study(scp: Any, organisation: Any, tmp_path: Path) -> None:
    node = add_pacs_node(organisation, CALLING)
    files = write_study(tmp_path / "study")

    run = storescu(scp, files)
    settle(scp)

    assert run.returncode == 0, run.stderr
    study = Study.objects.get(organisation=organisation)
    assert study.patient.patient_id == PATIENT.patient_id
    assert_study_complete(study, files)
    assert set(Instance.objects.values_list("source", "source_node", "transfer_syntax_uid")) == {
        ("scp", node.pk, pydicom.uid.ExplicitVRLittleEndian)
    }
    # Stored as received: the data set bytes are the file's own (storescu sends them in the file's syntax).
    sent = {sop_uid(f): dataset_bytes(f.read_bytes()) for f in files}
    root = storage_dir() / "instances"
    for instance in Instance.objects.all():
        stored = (root / instance.storage_key).read_bytes()
        assert dataset_bytes(stored) == sent[instance.sop_instance_uid]
        assert hashlib.sha256(stored).hexdigest() == instance.sha256
    # One audit entry for the association, with its counts.
    entry = AuditEvent.objects.get(action="dicom.store")
    assert (entry.outcome, entry.actor_label, entry.organisation_id) == ("success", CALLING, organisation.pk)
    assert entry.detail == {"stored": 100, "duplicate": 0, "refused": 0, "patients": 1}
    assert entry.study_uids == [study.study_instance_uid]
    # The SCP still answers.
    echo = echoscu(scp)
    assert echo.returncode == 0, echo.stderr


# --- pydicom's sample files, each in its own transfer syntax ---------------------------------------

SAMPLES = Path(get_testdata_file("CT_small.dcm")).parent


def valid_samples() -> dict[Path, pydicom.Dataset]:
    """pydicom's sample files that a PACS could send: file meta with a Transfer Syntax, SOP Class and
    Instance, Study and Series UIDs, and a data set pydicom reads to the end."""
    found = {}
    for path in sorted(p for p in SAMPLES.rglob("*") if p.is_file()):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pydicom's complaints about odd but readable files
                ds = pydicom.dcmread(path)
        except (InvalidDicomError, EOFError, ValueError, OSError):
            continue
        keys = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
        if ds.file_meta.get("TransferSyntaxUID") and all(str(ds.get(k, "")).strip() for k in keys):
            found[path] = ds
    return found


def storescu_config(folder: Path, pairs: set[tuple[str, str]]) -> Path:
    """A storescu association profile with one presentation context per (SOP class, transfer syntax) pair, so
    every file travels in its own transfer syntax (DCMTK's format, as /etc/dcmtk/storescu.cfg)."""
    syntaxes = sorted({ts for _, ts in pairs})
    lines = ["[[TransferSyntaxes]]"]
    for i, ts in enumerate(syntaxes):
        lines += [f"[TS{i}]", f"TransferSyntax1 = {ts}"]
    lines += ["[[PresentationContexts]]", "[Samples]"]
    for n, (sop_class, ts) in enumerate(sorted(pairs), start=1):
        lines.append(f"PresentationContext{n} = {sop_class}\\TS{syntaxes.index(ts)}")
    lines += ["[[Profiles]]", "[Samples]", "PresentationContexts = Samples"]
    path = folder / "storescu.cfg"
    path.write_text("\n".join(lines) + "\n")
    return path


def storescu_outcomes(log: str) -> dict[Path, str | None]:
    """Per file storescu took up (in its order): the status text of the C-STORE response, or None when
    storescu did not send it (it could not read the file)."""
    outcomes: dict[Path, str | None] = {}
    current: Path | None = None
    for line in log.splitlines():
        if match := re.match(r"I: Sending file: (.+)$", line):
            current = Path(match.group(1))
            outcomes[current] = None
        elif current is not None and (match := re.match(r"I: Received Store Response \((.+)\)$", line)):
            outcomes[current] = match.group(1)
    return outcomes


def as_sent(path: Path, folder: Path) -> bytes:
    """The data set as DCMTK puts it on the wire: re-encoded in the file's own transfer syntax with explicit
    sequence lengths, recalculated group lengths and no trailing padding (dcmconv's defaults with -F -p)."""
    out = folder / f"{hashlib.sha256(str(path).encode()).hexdigest()[:16]}.ds"
    run = _dcmtk("dcmconv", "-F", "-p", str(path), str(out))
    assert run.returncode == 0, run.stderr
    return out.read_bytes()


def comparable(transfer_syntax: str, data: bytes) -> bytes:
    """Deflated data sets are compared inflated (a deflated stream may carry a trailing pad byte)."""
    if transfer_syntax == pydicom.uid.DeflatedExplicitVRLittleEndian:
        return zlib.decompressobj(-zlib.MAX_WBITS).decompress(data)
    return data


def test_storescu_sends_pydicom_samples_in_their_own_transfer_syntax(
    scp: Any, organisation: Any, tmp_path: Path
) -> None:
    add_pacs_node(organisation, CALLING)
    samples = valid_samples()
    assert len(samples) > 100, "pydicom's sample files are missing"
    pairs = {(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in samples.values()}
    config = storescu_config(tmp_path, pairs)

    run = storescu(scp, list(samples), extra=["-xf", str(config), "Samples", "--no-halt"])
    settle(scp)

    assert run.returncode == 0, run.stderr[-3000:]
    outcomes = storescu_outcomes(run.stderr)
    assert set(outcomes) == set(samples)
    sent = [path for path, status in outcomes.items() if status is not None]
    assert {path: status for path, status in outcomes.items() if status is not None} == dict.fromkeys(
        sent, "Success"
    )
    # storescu skips only files DCMTK cannot read (truncated, broken pixel data); it says so for each.
    unsent = [path for path, status in outcomes.items() if status is None]
    assert len(unsent) <= 10, unsent
    for path in unsent:
        assert re.search(
            rf"E: (Bad DICOM file|No SOP Class or Instance UID in file): {re.escape(str(path))}", run.stderr
        ), path
    # Nothing was transcoded on the way, and every transfer syntax among the samples travelled.
    conversions = re.findall(r"^I: Converting transfer syntax: (.+) -> (.+)$", run.stderr, re.MULTILINE)
    assert conversions
    assert [(a, b) for a, b in conversions if a != b] == []
    assert {str(samples[p].file_meta.TransferSyntaxUID) for p in sent} == {ts for _, ts in pairs}

    # Each distinct SOP Instance UID indexed once, from the first file sent with it.
    first: dict[str, Path] = {}
    for path in sent:
        first.setdefault(str(samples[path].SOPInstanceUID), path)
    instances = {i.sop_instance_uid: i for i in Instance.objects.filter(organisation=organisation)}
    assert set(instances) == set(first)
    assert len(storage_files()) == len(instances)
    assert leftovers() == []
    for study in Study.objects.all():
        in_study = Instance.objects.filter(series__study=study)
        assert study.number_of_instances == in_study.count()
        assert study.size == in_study.aggregate(total=Sum("size"))["total"]

    # Stored as received: same transfer syntax, and the data set bytes are those storescu sent.
    root = storage_dir() / "instances"
    wire = {path: as_sent(path, tmp_path) for path in sent}
    for uid, instance in instances.items():
        source = first[uid]
        ts = str(samples[source].file_meta.TransferSyntaxUID)
        stored = (root / instance.storage_key).read_bytes()
        assert hashlib.sha256(stored).hexdigest() == instance.sha256
        assert instance.transfer_syntax_uid == ts, source.name
        assert (
            pydicom.dcmread(root / instance.storage_key, stop_before_pixels=True).file_meta.TransferSyntaxUID
            == ts
        )
        assert comparable(ts, dataset_bytes(stored)) == comparable(ts, wire[source]), source.name
    # A JPEG 2000 sample, checked against the file itself: its data set byte for byte as in the original.
    j2k = SAMPLES / "J2K_pixelrep_mismatch.dcm"
    assert samples[j2k].file_meta.TransferSyntaxUID == pydicom.uid.JPEG2000Lossless
    stored_j2k = (root / instances[str(samples[j2k].SOPInstanceUID)].storage_key).read_bytes()
    assert dataset_bytes(stored_j2k) == dataset_bytes(j2k.read_bytes())

    # Same SOP Instance UID again: stored once; where the content differs, the first copy stays and the
    # organisation is told (pydicom's MR_small* are one image in many transfer syntaxes).
    mr_uid = str(samples[SAMPLES / "MR_small.dcm"].SOPInstanceUID)
    assert Instance.objects.filter(sop_instance_uid=mr_uid).count() == 1
    conflicts = [
        path
        for path in sent
        if path != first[uid := str(samples[path].SOPInstanceUID)]
        and (samples[path].file_meta.TransferSyntaxUID, wire[path])
        != (samples[first[uid]].file_meta.TransferSyntaxUID, wire[first[uid]])
    ]
    audited = list(AuditEvent.objects.filter(action="dicom.store.conflict").values_list("detail", flat=True))
    assert sorted(entry["instance"] for entry in audited) == sorted(
        instances[str(samples[path].SOPInstanceUID)].pk for path in conflicts
    )
    assert instances[mr_uid].pk in {entry["instance"] for entry in audited}
    entry = AuditEvent.objects.get(action="dicom.store")
    assert entry.detail["stored"] == len(instances)
    assert entry.detail["duplicate"] == len(sent) - len(instances)
    assert entry.detail["refused"] == 0

    echo = echoscu(scp)
    assert echo.returncode == 0, echo.stderr


# --- the same study again, and from two associations at once ---------------------------------------


def test_resending_a_study_changes_nothing(scp: Any, organisation: Any, tmp_path: Path) -> None:
    add_pacs_node(organisation, CALLING)
    files = write_study(tmp_path / "study")
    first_run = storescu(scp, files)
    settle(scp)
    assert first_run.returncode == 0, first_run.stderr
    study = Study.objects.get()
    before = study_snapshot(study)

    again = storescu(scp, files)
    settle(scp)

    assert again.returncode == 0, again.stderr
    assert list(storescu_outcomes(again.stderr).values()) == ["Success"] * len(files)
    assert study_snapshot(study) == before
    assert_study_complete(study, files)
    entries = list(
        AuditEvent.objects.filter(action="dicom.store").order_by("pk").values_list("detail", flat=True)
    )
    assert entries == [
        {"stored": 100, "duplicate": 0, "refused": 0, "patients": 1},
        {"stored": 0, "duplicate": 100, "refused": 0, "patients": 1},
    ]
    assert not AuditEvent.objects.filter(action="dicom.store.conflict").exists()


def run_together(*arglists: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """Start several storescu processes at once and wait for all (each bounded by TIMEOUT)."""
    program = require_program("storescu")
    procs = [
        subprocess.Popen(
            [program, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=DCMTK_ENV
        )
        for args in arglists
    ]
    results = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=TIMEOUT)
            results.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def test_concurrent_associations_into_one_study_lose_nothing(
    scp: Any, organisation: Any, tmp_path: Path
) -> None:
    add_pacs_node(organisation, CALLING)
    add_pacs_node(organisation, "CT_SCANNER_2")
    files = write_study(tmp_path / "series1")
    study_uid = sop_study_uid(files[0])
    other_series = write_study(tmp_path / "series2", count=30, study_uid=study_uid)
    # Both senders start with the same 20 instances (racing for the same rows), then go their own ways;
    # a third adds another series of the same study meanwhile.
    overlap = files[40:60]
    batches = [
        (overlap + files[:40], CALLING),
        (overlap + files[60:], "CT_SCANNER_2"),
        (other_series, CALLING),
    ]
    runs = run_together(*(storescu_args(scp, batch, calling=calling) for batch, calling in batches))
    settle(scp)

    for run, (batch, _) in zip(runs, batches, strict=True):
        assert run.returncode == 0, run.stderr[-3000:]
        assert storescu_outcomes(run.stderr) == dict.fromkeys(batch, "Success"), run.stderr[-3000:]
    everything = files + other_series
    study = Study.objects.get()
    study.refresh_from_db()
    assert study.study_instance_uid == study_uid
    assert study.number_of_instances == Instance.objects.count() == len(everything)
    assert study.number_of_series == Series.objects.filter(study=study).count() == 2
    assert sorted(Series.objects.values_list("number_of_instances", flat=True)) == [30, 100]
    assert set(Instance.objects.values_list("sop_instance_uid", flat=True)) == {
        sop_uid(f) for f in everything
    }
    assert Patient.objects.count() == 1
    on_disk = storage_files()
    assert len(on_disk) == len(everything)
    assert (
        study.size == sum(p.stat().st_size for p in on_disk) == Instance.objects.aggregate(t=Sum("size"))["t"]
    )
    for series in Series.objects.all():
        assert series.size == Instance.objects.filter(series=series).aggregate(t=Sum("size"))["t"]
    assert leftovers() == []
    details = list(AuditEvent.objects.filter(action="dicom.store").values_list("detail", flat=True))
    assert len(details) == 3
    assert sum(d["stored"] for d in details) == len(everything)
    assert sum(d["duplicate"] for d in details) == len(overlap)
    assert not AuditEvent.objects.filter(action="dicom.store.conflict").exists()


# --- who may call ---------------------------------------------------------------------------------


def test_unknown_calling_ae_title_is_rejected(scp: Any, organisation: Any, tmp_path: Path) -> None:
    add_pacs_node(organisation, CALLING)
    files = write_study(tmp_path / "study", count=2)

    run = storescu(scp, files, calling="STRANGER")
    echo = echoscu(scp, calling="STRANGER")
    settle(scp)

    for result in (run, echo):
        assert result.returncode != 0
        assert "Association Rejected" in result.stderr, result.stderr
        # A-ASSOCIATE-RJ: rejected-permanent, service user, calling AE title not recognised (PS3.8 9.3.4).
        assert "Rejected Permanent" in result.stderr
        assert "Calling AE Title Not Recognized" in result.stderr
    rejected = AuditEvent.objects.filter(action="dicom.association.rejected")
    assert rejected.count() == 2
    assert set(rejected.values_list("outcome", "actor_label", "client_address")) == {
        ("denied", "STRANGER", "127.0.0.1")
    }
    assert not Instance.objects.exists()
    assert not Study.objects.exists()
    assert storage_files() == []
    assert not AuditEvent.objects.filter(action="dicom.store").exists()


def test_node_with_a_host_is_admitted_only_from_that_host(
    scp: Any, organisation: Any, tmp_path: Path
) -> None:
    add_pacs_node(organisation, "REMOTE_PACS", host="10.20.30.40")
    add_pacs_node(organisation, "LOCAL_PACS", host="127.0.0.1")
    files = write_study(tmp_path / "study", count=3)

    elsewhere = storescu(scp, files, calling="REMOTE_PACS")
    settle(scp)
    assert elsewhere.returncode != 0
    assert "Association Rejected" in elsewhere.stderr, elsewhere.stderr
    assert (
        AuditEvent.objects.filter(
            action="dicom.association.rejected", actor_label="REMOTE_PACS", outcome="denied"
        ).count()
        == 1
    )
    assert not Instance.objects.exists()
    assert storage_files() == []

    here = storescu(scp, files, calling="LOCAL_PACS")
    settle(scp)
    assert here.returncode == 0, here.stderr
    study = Study.objects.get()
    assert_study_complete(study, files)
    assert set(Instance.objects.values_list("source_node__ae_title", flat=True)) == {"LOCAL_PACS"}
