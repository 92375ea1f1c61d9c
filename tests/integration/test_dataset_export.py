"""``triage dataset export``: reviewed studies in the store -> de-identified images + datalists.

The store is filled through the real ingest path (16 real LIDC-IDRI-0001 slices, given a patient
name, and synthetic DX studies), analysed results are recorded with the job functions the worker
uses, and a radiologist's acknowledgement / override is set on the study rows, as the review API
does. Everything exported is read back with pydicom and searched for the original identifiers.
"""

from __future__ import annotations

import io
import json
import stat
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from typer.testing import CliRunner

from training.detection import fracture_datalist, nodule_datalist
from training.detection.config import DatalistData
from triage.cli import app
from triage.core.priority import Priority
from triage.dicom.deidentify import Deidentifier
from triage.dicom.radiograph import load_radiograph
from triage.store import jobs
from triage.store.db import Store, migrate, sqlite_url
from triage.store.ingest import accept
from triage.store.schema import JobState, Study
from triage.store.spool import Spool
from triage.synth.studies import make_dr_study

pytestmark = pytest.mark.integration

FAKE_NAME = "DOE^JANE^Q"  # the LIDC files carry an empty PatientName; give them one to look for


@dataclass(frozen=True)
class Original:
    """The identifiers of one ingested study that must never leave the service."""

    study_uid: str
    series_uid: str
    sop_uids: tuple[str, ...]
    patient_name: str
    patient_id: str
    accession: str

    def values(self) -> list[str]:
        ids = [self.study_uid, self.series_uid, *self.sop_uids, self.patient_id, self.accession]
        return [v for v in (*ids, self.patient_name) if v]


def _ingest(store: Store, spool: Spool, datasets: list[pydicom.Dataset], *, now: float) -> Original:
    for ds in datasets:
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        accept(buffer.getvalue(), ds, store=store, spool=spool, source="test", now=now)
    first = datasets[0]
    return Original(
        str(first.StudyInstanceUID),
        str(first.SeriesInstanceUID),
        tuple(str(d.SOPInstanceUID) for d in datasets),
        str(first.get("PatientName", "")),
        str(first.get("PatientID", "")),
        str(first.get("AccessionNumber", "")),
    )


def _result(
    original: Original, *, task: str, findings: list[dict[str, object]]
) -> dict[str, object]:
    """A result in the ``triage.reporting.summary_json`` shape."""
    return {
        "study_uid": original.study_uid,
        "priority": "urgent",
        "reasons": ["test"],
        "policy_version": 1,
        "findings": findings,
        "tasks": [
            {"task": task, "series_uid": original.series_uid, "status": "analysed", "reason": None}
        ],
        "ai_generated": True,
    }


@dataclass(frozen=True)
class Service:
    """The service's data folder and what was put in its store."""

    data: Path
    ct: Original  # acknowledged
    dx: Original  # overridden to stat
    unreviewed: Original  # analysed, never reviewed
    box: tuple[int, int, int, int]  # the DX finding, source pixels xyxy


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Service:
    """A data folder with a store holding three analysed studies, two of them reviewed."""
    data = tmp_path_factory.mktemp("data")
    store = Store(sqlite_url(data / "triage.db"))
    migrate(store.engine)
    spool = Spool(data / "spool")
    lidc = []
    for path in sorted((shared_data / "lidc-idri-0001-subset16").glob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds.PatientName = FAKE_NAME
        lidc.append(ds)
    assert len(lidc) == 16
    ct = _ingest(store, spool, lidc, now=1000.0)
    synth = tmp_path_factory.mktemp("synth")
    dx_studies = [make_dr_study(synth, seed, kind="limb", n_fractures=1) for seed in (21, 22)]
    dx = [_ingest(store, spool, [pydicom.dcmread(s.files[0])], now=1000.0) for s in dx_studies]
    nodule = {"type": "nodule", "score": 0.9, "center_lps_mm": [-120.5, -80.25, -110.0]}
    nodule |= {"diameter_mm": 9.5, "series_uid": ct.series_uid}
    box = dx_studies[0].fractures[0].box_col_row
    fracture = {"type": "fracture", "label": "fracture", "score": 0.8}
    fracture |= {"sop_instance_uid": dx[0].sop_uids[0]}
    fracture |= {"box_col_row_px": {"min": [box[0], box[1]], "max": [box[2], box[3]]}}
    results = {
        ct.study_uid: _result(ct, task="lung_nodule", findings=[nodule]),
        dx[0].study_uid: _result(dx[0], task="fracture", findings=[fracture]),
        dx[1].study_uid: _result(dx[1], task="fracture", findings=[]),
    }
    assert len(jobs.promote_complete(store, now=1100.0, rules=jobs.CompletionRules())) == 3
    while (job := jobs.claim_next(store, worker_id="w", now=1200.0, lease_s=60)) is not None:
        outcome = jobs.Outcome(JobState.DONE, Priority.URGENT, "", results[job.study_uid])
        assert jobs.finish(store, job, outcome, worker_id="w", now=1300.0)
    with store.session() as s:
        acked = s.get(Study, ct.study_uid)
        overridden = s.get(Study, dx[0].study_uid)
        assert acked is not None
        assert overridden is not None
        acked.acknowledged_by, acked.acknowledged_at = "dr.a", 1400.0
        overridden.override_priority, overridden.override_reason = "stat", "displaced"
        overridden.override_by = "dr.b"
    store.close()
    return Service(data, ct, dx[0], dx[1], box)


def _export(monkeypatch: pytest.MonkeyPatch, data: Path, *args: str) -> tuple[int, str]:
    monkeypatch.setenv("TRIAGE_DATA_DIR", str(data))
    monkeypatch.delenv("TRIAGE_DATABASE_URL", raising=False)
    result = CliRunner().invoke(app, ["dataset", "export", *args])
    return result.exit_code, result.output


def _headers(out: Path) -> dict[str, pydicom.Dataset]:
    files = sorted((out / "images").rglob("*.dcm"))
    return {str(p.relative_to(out)): pydicom.dcmread(p) for p in files}


def _identity(ds: pydicom.Dataset) -> tuple[str, ...]:
    keys = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "PatientID", "PatientName")
    return tuple(str(ds.get(k, "")) for k in (*keys, "AccessionNumber", "StudyDate"))


@dataclass(frozen=True)
class Export:
    """One ``triage dataset export`` run: its folder, key file, console output and headers."""

    out: Path
    key_file: Path
    output: str
    headers: dict[str, pydicom.Dataset]

    def cts(self) -> list[pydicom.Dataset]:
        return [ds for ds in self.headers.values() if ds.Modality == "CT"]


@pytest.fixture(scope="module")
def exported(service: Service, tmp_path_factory: pytest.TempPathFactory) -> Export:
    root = tmp_path_factory.mktemp("export")
    key_file = root / "keys" / "reid.json"
    with pytest.MonkeyPatch.context() as mp:
        code, output = _export(
            mp, service.data, "--out", str(root / "a"), "--key-file", str(key_file)
        )
    assert code == 0, output
    return Export(root / "a", key_file, output, _headers(root / "a"))


def test_only_reviewed_studies_are_exported(service: Service, exported: Export) -> None:
    assert "2 studies, 17 instances" in exported.output
    assert len(exported.headers) == 17  # 16 CT slices + 1 radiograph, not the unreviewed DX
    key = json.loads(exported.key_file.read_text())
    assert service.unreviewed.study_uid not in key["studies"]
    hidden = Deidentifier(key["seed"]).pseudonym_uid(service.unreviewed.study_uid)
    assert hidden not in {str(d.StudyInstanceUID) for d in exported.headers.values()}


def test_no_original_identifier_is_in_any_exported_file_or_the_output(
    service: Service, exported: Export
) -> None:
    secrets = [*service.ct.values(), *service.dx.values(), *service.unreviewed.values()]
    spooled = b"".join(p.read_bytes() for p in (service.data / "spool").rglob("*.dcm"))
    assert all(v.encode() in spooled for v in secrets)  # the search below can find them
    assert all((service.dx.patient_name, service.dx.patient_id, service.dx.accession))
    for path in [*exported.out.rglob("*.dcm"), *exported.out.glob("*.json")]:
        raw = path.read_bytes()
        assert [v for v in secrets if v.encode() in raw] == [], path.name
    assert [v for v in secrets if v in exported.output] == []
    for ds in exported.headers.values():
        assert str(ds.PatientName) not in (FAKE_NAME, service.dx.patient_name)
        assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100", "113107"]
        assert not any(e.tag.is_private for e in ds)


def test_pseudonyms_are_consistent_in_a_study_and_across_runs(
    service: Service, exported: Export, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cts = exported.cts()
    assert len(cts) == 16
    shared = {
        (d.StudyInstanceUID, d.SeriesInstanceUID, d.PatientID, str(d.PatientName)) for d in cts
    }
    assert len(shared) == 1
    assert len({d.SOPInstanceUID for d in cts}) == 16
    key = ["--key-file", str(exported.key_file)]
    code, output = _export(monkeypatch, service.data, "--out", str(tmp_path / "b"), *key)
    assert code == 0, output
    again = {k: _identity(v) for k, v in _headers(tmp_path / "b").items()}
    assert again == {k: _identity(v) for k, v in exported.headers.items()}  # names too


def test_the_key_file_is_private_and_maps_pseudonyms_back(
    service: Service, exported: Export
) -> None:
    assert stat.S_IMODE(exported.key_file.stat().st_mode) == 0o600
    back = {v: k for k, v in json.loads(exported.key_file.read_text())["studies"].items()}
    assert back[str(exported.cts()[0].StudyInstanceUID)] == service.ct.study_uid
    (dx,) = [d for d in exported.headers.values() if d.Modality != "CT"]
    assert back[str(dx.StudyInstanceUID)] == service.dx.study_uid


def test_datalists_hold_the_reviewed_boxes_their_source_and_priority(
    service: Service, exported: Export
) -> None:
    (entry,) = json.loads((exported.out / "datalist.json").read_text())["training"]
    assert entry["box"] == [[-120.5, -80.25, -110.0, 9.5, 9.5, 9.5]]
    assert entry["label"] == [0]
    assert (entry["label_source"], entry["priority"]) == ("ai_acknowledged", "urgent")
    assert entry["study"] == str(exported.cts()[0].StudyInstanceUID)
    (dr_entry,) = json.loads((exported.out / "dr_datalist.json").read_text())["training"]
    assert dr_entry["box"] == [list(service.box)]
    assert (dr_entry["label_source"], dr_entry["priority"]) == ("radiologist_override", "stat")


def test_triage_train_reads_the_exported_datalists(service: Service, exported: Export) -> None:
    ct = DatalistData(kind="datalist", datalist=exported.out / "datalist.json")
    (item,) = nodule_datalist.datalist_items(ct)
    assert nodule_datalist.load_ct(item).shape_ijk == (512, 512, 16)  # one series folder
    dr = DatalistData(kind="datalist", datalist=exported.out / "dr_datalist.json")
    (dr_item,) = fracture_datalist.datalist_items(dr)
    assert dr_item.boxes_xyxy_px == (tuple(float(v) for v in service.box),)
    assert load_radiograph(dr_item.source).pixel_spacing_mm is not None


def test_the_default_key_lives_in_the_data_folder_not_in_the_export(
    service: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = service.data
    code, output = _export(
        monkeypatch, data, "--out", str(tmp_path / "out"), "--since", "1970-01-01"
    )
    assert code == 0, output
    assert stat.S_IMODE((data / "reid-key.json").stat().st_mode) == 0o600
    assert not list((tmp_path / "out").rglob("*key*"))


def test_a_key_file_inside_the_export_is_refused(
    service: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = service.data
    out = tmp_path / "out"
    code, output = _export(
        monkeypatch, data, "--out", str(out), "--key-file", str(out / "k" / "key.json")
    )
    assert code == 2
    assert "--key-file must be outside --out" in output
    assert not out.exists()


def test_a_key_file_others_can_read_is_refused(
    service: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = service.data
    key = tmp_path / "key.json"
    key.write_text(json.dumps({"format": "triage-reid-key/1", "seed": "s" * 64, "studies": {}}))
    key.chmod(0o644)
    code, output = _export(
        monkeypatch, data, "--out", str(tmp_path / "out"), "--key-file", str(key)
    )
    assert code == 2
    assert "must be private to its owner (mode 600), got 644" in output


def test_since_filters_on_the_analysis_date_and_must_be_a_date(
    service: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = service.data
    key = ["--key-file", str(tmp_path / "key.json")]
    code, output = _export(
        monkeypatch, data, "--out", str(tmp_path / "o"), "--since", "2000-01-01", *key
    )
    assert code == 0, output
    assert "0 studies" in output  # analysed at t = 1300 s after the epoch, i.e. in 1970
    code, output = _export(
        monkeypatch, data, "--out", str(tmp_path / "o"), "--since", "last week", *key
    )
    assert code == 2
    assert "--since must be a date YYYY-MM-DD, got 'last week'" in output
