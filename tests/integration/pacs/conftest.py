"""Fixtures for the PACS client tests: one real Orthanc per session, emptied before each test."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pydicom
import pytest

from tests.orthanc import ENGINE_AE, OrthancServer, free_port
from triage.adapters.pacs.nodes import FlagKind, PacsNode, QueryMethod, RetrieveMethod
from triage.core.priority import TriagePolicy, prioritise
from triage.dicom.outputs import AlgorithmInfo, build_sr, write_sr

NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


@pytest.fixture(scope="session")
def engine_port() -> int:
    """Return the port of the engine's Storage SCP, as Orthanc's DicomModalities knows it."""
    return free_port()


@pytest.fixture(scope="session")
def orthanc_server(
    tmp_path_factory: pytest.TempPathFactory, engine_port: int
) -> Iterator[OrthancServer]:
    """Start one Orthanc for the session (the engine registered as modality ``triage``)."""
    server = OrthancServer(
        tmp_path_factory.mktemp("orthanc"),
        modalities={"triage": (ENGINE_AE, "127.0.0.1", engine_port)},
    )
    with server:
        yield server


@pytest.fixture
def orthanc(orthanc_server: OrthancServer) -> OrthancServer:
    """Return the session's Orthanc, running and empty."""
    if not orthanc_server.running:  # a test that simulated an outage failed half-way
        orthanc_server.start()
    orthanc_server.clear()
    return orthanc_server


@pytest.fixture
def node(orthanc: OrthancServer) -> PacsNode:
    """Return the node configuration of the test Orthanc, every role switched on."""
    return PacsNode(
        name="orthanc-test",
        ae_title=orthanc.aet,
        host="127.0.0.1",
        port=orthanc.dicom_port,
        dicomweb_url=orthanc.dicomweb_url,
        rest_url=orthanc.http_url,
        send_to=True,
        pull_from=True,
        query=QueryMethod.QIDO,
        retrieve=RetrieveMethod.WADO,
        flag_target=FlagKind.ORTHANC,
    )


@pytest.fixture(scope="session")
def subset_files(shared_data: Path) -> list[Path]:
    """Return the 16 real LIDC-IDRI-0001 CT slices (one study, one series)."""
    files = sorted((shared_data / "lidc-idri-0001-subset16").glob("*.dcm"))
    assert len(files) == 16, f"the LIDC subset must hold 16 slices, got {len(files)}"
    return files


@pytest.fixture(scope="session")
def subset_study_uid(subset_files: list[Path]) -> str:
    """Return the StudyInstanceUID of the LIDC subset."""
    return str(pydicom.dcmread(subset_files[0], stop_before_pixels=True).StudyInstanceUID)


@pytest.fixture(scope="session")
def sr_file(subset_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a TID 1500 SR the engine would write for the subset (a NOT_ANALYSED report)."""
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in subset_files]
    sr = build_sr(
        findings=[],
        decision=prioritise([], TriagePolicy(), failures=["test report"]),
        source_datasets=sources,
        algorithms=[AlgorithmInfo("lung-nodule-det", "1.0.0", "a" * 64, "lung_nodule")],
        now=NOW,
    )
    return write_sr(sr, tmp_path_factory.mktemp("sr"))
