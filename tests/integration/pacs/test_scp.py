"""The engine's Storage SCP over real loopback associations, dcmtk and pynetdicom peers."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pydicom
import pytest
from pydicom.filereader import read_file_meta_info
from pydicom.uid import (
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    MRImageStorage,
    generate_uid,
)
from pynetdicom import AE, _config
from pynetdicom.association import Association
from sqlalchemy import func, select

from tests.factories import make_radiograph, write_corrupt_dicom
from triage.adapters.pacs.allow import AllowList
from triage.adapters.pacs.scp import STORAGE_SYNTAXES, StorageSCP, StoreStatus
from triage.store import audit
from triage.store.db import Store, migrate, sqlite_url
from triage.store.ingest import IngestPolicy
from triage.store.schema import Instance, Study
from triage.store.spool import Spool

pytestmark = pytest.mark.integration

SCP_AE = "TRIAGE"
SENDER_AE = "PACS1"
LOOPBACK = "127.0.0.1"
DCMTK_TIMEOUT_S = 120
HASHED_PATH = re.compile(r"^[0-9a-f]{24}/[0-9a-f]{24}/[0-9a-f]{24}\.dcm$")

MakeSCP = Callable[..., StorageSCP]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = Store(sqlite_url(tmp_path / "db" / "triage.db"))
    migrate(db.engine)
    yield db
    db.close()


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool")


@pytest.fixture
def make_scp(store: Store, spool: Spool) -> Iterator[MakeSCP]:
    """Return a factory of started SCPs on free loopback ports (stopped after the test)."""
    started: list[StorageSCP] = []

    def make(
        *,
        policy: IngestPolicy | None = None,
        max_associations: int = 4,
        hosts: tuple[str, ...] = ("127.0.0.0/8",),
        check_called_ae: bool = True,
    ) -> StorageSCP:
        allow = AllowList.model_validate(
            {"version": 1, "callers": [{"ae_title": SENDER_AE, "hosts": list(hosts)}]}
        )
        scp = StorageSCP(
            ae_title=SCP_AE,
            host=LOOPBACK,
            port=0,
            allow=allow,
            store=store,
            spool=spool,
            ingest_policy=policy or IngestPolicy(),
            max_associations=max_associations,
            max_pdu_bytes=65536,
            check_called_ae=check_called_ae,
        )
        scp.start()
        started.append(scp)
        return scp

    yield make
    for scp in started:
        scp.stop()


@pytest.fixture(autouse=True)
def send_files_as_they_are(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make pynetdicom SCUs send a file's bytes unparsed, as a modality would (no re-encoding).

    This also lets the tests send data sets that pydicom's SCU checks would refuse to send.
    """
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)


@pytest.fixture(scope="module")
def lidc16(shared_data: Path) -> list[Path]:
    files = sorted((shared_data / "lidc-idri-0001-subset16").glob("*.dcm"))
    assert len(files) == 16, f"the LIDC subset must hold 16 slices, got {len(files)}"
    return files


@pytest.fixture(scope="module")
def totalseg_ct(shared_data: Path) -> Path:
    """Return one JPEG 2000 lossless CT slice whose data set has empty UIDs (as published)."""
    return (
        shared_data
        / "non-chest-ct-totalseg"
        / "CT.1.3.12.2.1107.5.1.4.60064.30000022120808113428000016573"
    )


def dcmtk(
    tool: str,
    *options: str,
    port: int,
    files: Sequence[Path] = (),
    ae_title: str = SENDER_AE,
    called: str = SCP_AE,
) -> subprocess.CompletedProcess[str]:
    """Run a dcmtk SCU (echoscu, storescu) against the SCP; the caller checks the exit code."""
    command = [tool, "-aet", ae_title, "-aec", called, *options, LOOPBACK, str(port)]
    return subprocess.run(
        [*command, *map(str, files)],
        check=False,
        capture_output=True,
        text=True,
        timeout=DCMTK_TIMEOUT_S,
    )


def storescu(*options: str, files: Sequence[Path], port: int) -> None:
    """Send ``files`` with dcmtk storescu from the allowed AE, failing the test on an error."""
    result = dcmtk("storescu", *options, port=port, files=files)
    assert result.returncode == 0, result.stdout + result.stderr


def associate(
    port: int, *contexts: tuple[str, str], ae_title: str = SENDER_AE, bind: str = ""
) -> Association:
    ae = AE(ae_title=ae_title)
    for sop_class, syntax in contexts:
        ae.add_requested_context(sop_class, syntax)
    return ae.associate(LOOPBACK, port, ae_title=SCP_AE, bind_address=(bind, 0))


def send_file(port: int, path: Path) -> int:
    """C-STORE one Part 10 file as is (pynetdicom SCU, its own association); return the status."""
    meta = read_file_meta_info(path)  # the data set itself may be unparseable on purpose
    assoc = associate(port, (meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID))
    assert assoc.is_established, "the SCP must accept the association of an allowed caller"
    try:
        response = assoc.send_c_store(path)
    finally:
        assoc.release()
    assert "Status" in response, "the SCP must answer the C-STORE"
    return int(response.Status)


def n_rows(store: Store, table: type[Instance] | type[Study]) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(table)) or 0)


def spooled_files(spool: Spool) -> list[Path]:
    return [p for p in spool.root.rglob("*") if p.is_file()] if spool.root.exists() else []


def spooled(store: Store, spool: Spool, sop_uid: str) -> pydicom.Dataset:
    with store.session() as s:
        row = s.get(Instance, sop_uid)
        assert row is not None, "the instance must be recorded"
        return pydicom.dcmread(spool.root / row.path)


def test_echo_and_store_of_16_ct_slices_are_spooled_and_recorded(
    make_scp: MakeSCP, store: Store, spool: Spool, lidc16: list[Path]
) -> None:
    scp = make_scp()
    echo = dcmtk("echoscu", port=scp.port)
    assert echo.returncode == 0, echo.stdout + echo.stderr
    storescu(files=lidc16, port=scp.port)

    with store.session() as s:
        rows = s.scalars(select(Instance)).all()
        studies = s.scalars(select(Study)).all()
        assert len(rows) == 16
        assert {r.source for r in rows} == {f"dimse:{SENDER_AE}"}
        for row in rows:
            assert HASHED_PATH.match(row.path), row.path
            assert row.sop_uid not in row.path
            assert row.study_uid not in row.path
            assert (spool.root / row.path).is_file()
        assert len(studies) == 1
        assert studies[0].n_instances == 16
    assert len(spooled_files(spool)) == 16
    original = pydicom.dcmread(lidc16[0])
    kept = spooled(store, spool, str(original.SOPInstanceUID))
    assert kept.PixelData == original.PixelData


def test_resending_the_same_series_is_idempotent(
    make_scp: MakeSCP, store: Store, spool: Spool, lidc16: list[Path]
) -> None:
    scp = make_scp()
    storescu(files=lidc16, port=scp.port)
    storescu(files=lidc16, port=scp.port)

    assert n_rows(store, Instance) == 16
    assert n_rows(store, Study) == 1
    with store.session() as s:
        study = s.scalars(select(Study)).one()
        assert study.n_instances == 16
    assert len(spooled_files(spool)) == 16


def assert_rejected_and_nothing_stored(
    result: subprocess.CompletedProcess[str], reason: str, store: Store, spool: Spool
) -> None:
    """The dcmtk SCU failed on an A-ASSOCIATE-RJ naming ``reason``, and nothing was kept."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Association Rejected" in output
    assert reason in output
    assert n_rows(store, Instance) == 0
    assert spooled_files(spool) == []


def test_unknown_calling_ae_is_rejected_audited_and_stores_nothing(
    make_scp: MakeSCP,
    store: Store,
    spool: Spool,
    lidc16: list[Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    scp = make_scp()
    result = dcmtk("storescu", port=scp.port, files=lidc16[:1], ae_title="STRANGER")

    assert_rejected_and_nothing_stored(result, "Calling AE Title Not Recognized", store, spool)
    rows = audit.recent(store, action="association_rejected")
    assert [(r.actor, r.remote, r.outcome) for r in rows] == [("STRANGER", LOOPBACK, "denied")]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("STRANGER" in m and LOOPBACK in m and "allow list" in m for m in warnings)


def test_an_allowed_caller_calling_another_ae_title_is_rejected_and_told_which(
    make_scp: MakeSCP,
    store: Store,
    spool: Spool,
    lidc16: list[Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    scp = make_scp()
    result = dcmtk("storescu", port=scp.port, files=lidc16[:1], called="ANY-SCP")

    assert_rejected_and_nothing_stored(result, "Called AE Title Not Recognized", store, spool)
    rows = audit.recent(store, action="association_rejected")
    assert [(r.actor, r.detail) for r in rows] == [(SENDER_AE, {"called_ae": "ANY-SCP"})]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("'ANY-SCP'" in m and f"to {SCP_AE!r}" in m for m in warnings), warnings


def test_any_called_ae_title_is_served_when_the_check_is_off(
    make_scp: MakeSCP, lidc16: list[Path]
) -> None:
    scp = make_scp(check_called_ae=False)
    result = dcmtk("storescu", port=scp.port, files=lidc16[:1], called="ANY-SCP")
    assert result.returncode == 0, result.stdout + result.stderr


def test_allowed_ae_from_an_address_outside_its_hosts_is_rejected(
    make_scp: MakeSCP, store: Store
) -> None:
    scp = make_scp(hosts=("127.0.0.1/32",))
    assoc = associate(scp.port, (CTImageStorage, ExplicitVRLittleEndian), bind="127.0.0.2")

    assert assoc.is_rejected
    rejection = assoc.acceptor.primitive
    assert (rejection.result, rejection.result_source, rejection.diagnostic) == (1, 1, 3)
    rows = audit.recent(store, action="association_rejected")
    assert [(r.actor, r.remote) for r in rows] == [(SENDER_AE, "127.0.0.2")]


def test_disk_over_threshold_refuses_with_a700_and_writes_nothing(
    make_scp: MakeSCP, store: Store, spool: Spool, lidc16: list[Path]
) -> None:
    scp = make_scp(policy=IngestPolicy(max_disk_fill=0.0001))

    assert send_file(scp.port, lidc16[0]) == StoreStatus.OUT_OF_RESOURCES == 0xA700
    assert n_rows(store, Instance) == 0
    assert n_rows(store, Study) == 0
    assert spooled_files(spool) == []  # not even a .partial temp file


def test_failed_spool_write_refuses_with_a700_and_records_nothing(
    make_scp: MakeSCP, store: Store, spool: Spool, lidc16: list[Path]
) -> None:
    scp = make_scp()
    study_uid = str(pydicom.dcmread(lidc16[0], stop_before_pixels=True).StudyInstanceUID)
    spool.study_dir(study_uid).parent.mkdir(parents=True, exist_ok=True)
    spool.study_dir(study_uid).write_bytes(b"")  # a file where the study folder must go

    assert send_file(scp.port, lidc16[0]) == 0xA700
    assert n_rows(store, Instance) == 0
    assert spooled_files(spool) == [spool.study_dir(study_uid)]


# sample file, the storescu option that proposes its transfer syntax, modality
KEPT_AS_SENT: dict[str, tuple[str, str, str]] = {
    "jpeg2000-cr": ("nema-wg04-cr/RG1_J2KR.dcm", "-xv", "CR"),
    "comprehensive-3d-sr": ("sr-examples/highdicom/sr_document.dcm", "-R", "SR"),
    "comprehensive-sr": ("sr-examples/dcmqi/sr.dcm", "-R", "SR"),
}


@pytest.mark.parametrize("case", KEPT_AS_SENT.values(), ids=KEPT_AS_SENT.keys())
def test_instances_are_kept_in_their_original_transfer_syntax(
    make_scp: MakeSCP,
    store: Store,
    spool: Spool,
    shared_data: Path,
    case: tuple[str, str, str],
) -> None:
    relative, option, modality = case
    source = shared_data / relative
    original = pydicom.dcmread(source)
    scp = make_scp()

    storescu("-R", option, files=[source], port=scp.port)

    kept = spooled(store, spool, str(original.SOPInstanceUID))
    assert kept.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID.strip()
    assert kept.Modality == modality
    if "PixelData" in original:
        assert kept.PixelData == original.PixelData  # still compressed, byte for byte
    else:
        assert kept.ContentSequence == original.ContentSequence


def test_jpeg2000_ct_is_kept_compressed_byte_for_byte(
    make_scp: MakeSCP, store: Store, spool: Spool, totalseg_ct: Path, tmp_path: Path
) -> None:
    # The sample is anonymised down to empty UIDs; give it UIDs, keep its JPEG 2000 pixel data.
    original = pydicom.dcmread(totalseg_ct)
    original.SOPClassUID = original.file_meta.MediaStorageSOPClassUID
    original.SOPInstanceUID = original.file_meta.MediaStorageSOPInstanceUID
    original.StudyInstanceUID = generate_uid(entropy_srcs=["totalseg study"])
    original.SeriesInstanceUID = generate_uid(entropy_srcs=["totalseg series"])
    with_uids = tmp_path / "ct_j2k.dcm"
    original.save_as(with_uids, enforce_file_format=True)
    scp = make_scp()

    storescu("-R", "-xv", files=[with_uids], port=scp.port)

    kept = spooled(store, spool, str(original.SOPInstanceUID))
    assert kept.file_meta.TransferSyntaxUID == JPEG2000Lossless
    assert kept.Modality == "CT"
    assert kept.PixelData == original.PixelData  # still compressed, byte for byte


def test_anonymised_file_with_empty_uids_fails_c000(
    make_scp: MakeSCP, store: Store, spool: Spool, totalseg_ct: Path
) -> None:
    scp = make_scp()

    assert send_file(scp.port, totalseg_ct) == StoreStatus.CANNOT_UNDERSTAND
    assert n_rows(store, Instance) == 0
    assert spooled_files(spool) == []


def test_instance_without_sop_instance_uid_fails_c000_and_the_scp_keeps_serving(
    make_scp: MakeSCP, store: Store, spool: Spool, tmp_path: Path
) -> None:
    scp = make_scp()
    good = make_radiograph(tmp_path / "in" / "good.dcm")
    bad = pydicom.dcmread(good)
    del bad.SOPInstanceUID  # the file meta still names it, so the SCU can send it
    bad_path = tmp_path / "in" / "bad.dcm"
    bad.save_as(bad_path)

    status = send_file(scp.port, bad_path)

    assert status == StoreStatus.CANNOT_UNDERSTAND
    assert 0xC000 <= status <= 0xCFFF
    assert n_rows(store, Instance) == 0
    assert spooled_files(spool) == []
    assert send_file(scp.port, good) == StoreStatus.SUCCESS
    assert n_rows(store, Instance) == 1


def test_unparseable_data_set_fails_c000_and_stores_nothing(
    make_scp: MakeSCP, store: Store, spool: Spool, tmp_path: Path
) -> None:
    scp = make_scp()
    good = make_radiograph(tmp_path / "in" / "good.dcm")
    corrupt = write_corrupt_dicom(tmp_path / "in" / "corrupt.dcm", good)

    assert send_file(scp.port, corrupt) == StoreStatus.CANNOT_UNDERSTAND
    assert n_rows(store, Instance) == 0
    assert spooled_files(spool) == []


def test_association_over_the_limit_is_rejected_transient_until_one_closes(
    make_scp: MakeSCP,
) -> None:
    scp = make_scp(max_associations=1)
    context = (CTImageStorage, ExplicitVRLittleEndian)
    first = associate(scp.port, context)
    assert first.is_established
    try:
        second = associate(scp.port, context)
        assert second.is_rejected
        rejection = second.acceptor.primitive
        # rejected-transient, service-provider (presentation), local-limit-exceeded
        assert (rejection.result, rejection.result_source, rejection.diagnostic) == (2, 3, 2)
    finally:
        first.release()

    deadline = time.monotonic() + 10.0  # the first acceptor thread takes a moment to end
    while True:
        third = associate(scp.port, context)
        if third.is_established or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert third.is_established
    third.release()


def test_every_advertised_transfer_syntax_is_accepted_and_other_sop_classes_are_not(
    make_scp: MakeSCP,
) -> None:
    scp = make_scp()
    contexts = [(CTImageStorage, syntax) for syntax in STORAGE_SYNTAXES]
    assoc = associate(scp.port, *contexts, (MRImageStorage, ExplicitVRLittleEndian))
    assert assoc.is_established
    try:
        accepted = {(cx.abstract_syntax, cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
        rejected = {cx.abstract_syntax for cx in assoc.rejected_contexts}
    finally:
        assoc.release()
    assert accepted == set(contexts)
    assert rejected == {MRImageStorage}


def test_dx_for_presentation_is_accepted(make_scp: MakeSCP, store: Store, tmp_path: Path) -> None:
    scp = make_scp()
    dx = make_radiograph(tmp_path / "dx.dcm", sop_class_uid=DigitalXRayImageStorageForPresentation)

    assert send_file(scp.port, dx) == StoreStatus.SUCCESS
    with store.session() as s:
        row = s.scalars(select(Instance)).one()
        assert row.modality == "DX"
        assert row.sop_class_uid == DigitalXRayImageStorageForPresentation
