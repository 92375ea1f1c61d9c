"""The engine's PACS clients against a real Orthanc 1.10 (DIMSE, DICOMweb, REST); no mocks."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import Comprehensive3DSRStorage, CTImageStorage

from tests.orthanc import ENGINE_AE, OrthancServer, free_port
from triage.adapters.pacs.dicomweb import (
    find_sr_series,
    instance_exists,
    qido_studies,
    retrieve_study,
    stow,
)
from triage.adapters.pacs.errors import DeliveryError
from triage.adapters.pacs.flags import make_flag_target
from triage.adapters.pacs.orthanc import last_change, stable_studies_since
from triage.adapters.pacs.scu import echo, find_studies, get_study, move_study, store_files

pytestmark = pytest.mark.integration

HIGHDICOM_CT = "sr-examples/highdicom/ct_image.dcm"  # another patient's study (pydicom CT_small)


def sop_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def wait_until(condition: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"condition must hold within {timeout_s} s"
        time.sleep(0.25)


def study_uids(orthanc: OrthancServer) -> set[str]:
    studies = orthanc.rest("GET", "/studies", params={"expand": ""}).json()
    return {s["MainDicomTags"]["StudyInstanceUID"] for s in studies}


def test_echo_succeeds_against_orthanc(node) -> None:
    echo(node, calling_ae=ENGINE_AE)


def test_echo_raises_delivery_error_when_nothing_listens(node) -> None:
    closed = node.model_copy(update={"port": free_port()})
    with pytest.raises(DeliveryError, match=r"must be accepted for C-ECHO, got aborted"):
        echo(closed, calling_ae=ENGINE_AE)


def test_store_files_delivers_the_ct_slices_and_the_sr(
    orthanc, node, subset_files, sr_file, subset_study_uid
) -> None:
    paths = [*subset_files, sr_file]

    results = store_files(node, paths, calling_ae=ENGINE_AE)

    assert [r.status for r in results] == [0x0000] * 17
    assert all(r.ok for r in results)
    assert [r.sop_instance_uid for r in results] == [sop_uid(p) for p in paths]
    stats = orthanc.rest("GET", "/statistics").json()
    assert (stats["CountStudies"], stats["CountSeries"], stats["CountInstances"]) == (1, 2, 17)
    study = orthanc.rest("GET", f"/studies/{orthanc.study_id(subset_study_uid)}/series").json()
    assert sorted(s["MainDicomTags"]["Modality"] for s in study) == ["CT", "SR"]


def test_store_files_of_nothing_opens_no_association(node) -> None:
    assert store_files(node.model_copy(update={"port": free_port()}), [], calling_ae="X") == []


def test_stowed_sr_is_found_by_qido_and_by_instance_exists(
    orthanc, node, subset_files, sr_file, subset_study_uid
) -> None:
    orthanc.upload(subset_files[:2])
    sr_uid = sop_uid(sr_file)

    result = stow(node, [sr_file])

    assert result.referenced_sop_uids == (sr_uid,)
    assert result.failed == ()
    series = find_sr_series(node, subset_study_uid)
    assert len(series) == 1
    sr_series_uid = str(pydicom.dcmread(sr_file, stop_before_pixels=True).SeriesInstanceUID)
    assert series[0]["0020000E"]["Value"] == [sr_series_uid]
    assert instance_exists(node, sr_uid, study_uid=subset_study_uid)
    assert not instance_exists(node, generate_uid(), study_uid=subset_study_uid)
    assert not instance_exists(node, sr_uid, study_uid=generate_uid())


def test_find_sr_series_is_empty_for_a_study_without_sr(orthanc, node, subset_files) -> None:
    orthanc.upload(subset_files[:1])
    study_uid = str(pydicom.dcmread(subset_files[0]).StudyInstanceUID)
    assert find_sr_series(node, study_uid) == []


@pytest.mark.parametrize("query", ["cfind", "qido"])
def test_study_queries_match_modality_and_study_date_by_day(
    orthanc, node, subset_files, subset_study_uid, query
) -> None:
    orthanc.upload(subset_files)

    def run(**kw: object) -> list[str]:
        if query == "cfind":
            hits = find_studies(node, calling_ae=ENGINE_AE, **kw)
        else:
            hits = qido_studies(node, **kw)
        return [h.study_uid for h in hits]

    [hit] = find_studies(node, calling_ae=ENGINE_AE) if query == "cfind" else qido_studies(node)
    assert hit.study_uid == subset_study_uid
    assert hit.study_date == date(2000, 1, 1)  # the LIDC subset's StudyDate
    assert hit.modalities == ("CT",)
    assert hit.n_instances == 16
    assert run(modalities=("DX", "CR")) == []
    assert run(since=datetime(2000, 1, 1, 23, 59)) == [subset_study_uid]  # same day: kept
    assert run(since=datetime(2000, 1, 2)) == []
    assert run(exclude_uids={subset_study_uid}) == []


@pytest.mark.parametrize("query", ["cfind", "qido"])
def test_study_queries_report_a_study_found_by_two_modalities_once(
    orthanc, node, subset_files, sr_file, subset_study_uid, query
) -> None:
    orthanc.upload([*subset_files[:2], sr_file])
    if query == "cfind":
        hits = find_studies(node, calling_ae=ENGINE_AE, modalities=("CT", "SR"))
    else:
        hits = qido_studies(node, modalities=("CT", "SR"))
    assert [h.study_uid for h in hits] == [subset_study_uid]
    assert sorted(hits[0].modalities) == ["CT", "SR"]


def test_stable_studies_since_reports_only_studies_stored_after_the_watermark(
    orthanc, node, shared_data, subset_files, subset_study_uid
) -> None:
    [old] = orthanc.upload([shared_data / HIGHDICOM_CT])
    wait_until(lambda: orthanc.rest("GET", f"/studies/{old['ParentStudy']}").json()["IsStable"])
    seq = last_change(node)  # the old study is stable before the watermark
    orthanc.upload(subset_files[:3])

    found: set[str] = set()

    def poll() -> bool:
        nonlocal seq
        page = stable_studies_since(node, since_seq=seq)
        found.update(page.study_uids)
        seq = page.last_seq
        return subset_study_uid in found

    wait_until(poll)
    assert found == {subset_study_uid}
    assert stable_studies_since(node, since_seq=seq).study_uids == ()


def test_retrieve_study_writes_readable_instances_named_by_sop_uid_hash(
    orthanc, node, subset_files, subset_study_uid, tmp_path
) -> None:
    orthanc.upload(subset_files)

    paths = retrieve_study(node, subset_study_uid, tmp_path)

    expected = {sop_uid(p) for p in subset_files}
    got = {str(pydicom.dcmread(p).SOPInstanceUID): p for p in paths}
    assert set(got) == expected
    for uid, path in got.items():
        assert path.name == f"{hashlib.sha256(uid.encode()).hexdigest()}.dcm"
    assert pydicom.dcmread(paths[0]).pixel_array.shape == (512, 512)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)


def test_retrieve_study_of_an_unknown_study_raises(orthanc, node, tmp_path) -> None:
    with pytest.raises(DeliveryError, match=r"WADO-RS on node 'orthanc-test' must succeed"):
        retrieve_study(node, generate_uid(), tmp_path)


def test_get_study_receives_every_instance_over_c_get(
    orthanc, node, subset_files, sr_file, subset_study_uid, tmp_path
) -> None:
    orthanc.upload([*subset_files, sr_file])

    paths = get_study(node, subset_study_uid, calling_ae=ENGINE_AE, out_dir=tmp_path)

    datasets = [pydicom.dcmread(p) for p in paths]
    assert {str(d.SOPInstanceUID) for d in datasets} == {
        sop_uid(p) for p in [*subset_files, sr_file]
    }
    assert {d.Modality for d in datasets} == {"CT", "SR"}
    assert all(
        p.name == f"{hashlib.sha256(str(d.SOPInstanceUID).encode()).hexdigest()}.dcm"
        for p, d in zip(paths, datasets, strict=True)
    )
    assert not list(tmp_path.glob("*.partial"))


def test_get_study_of_an_unknown_study_raises(orthanc, node, tmp_path) -> None:
    with pytest.raises(DeliveryError, match=r"\(0 completed, 0 failed\); nothing transferred"):
        get_study(node, generate_uid(), calling_ae=ENGINE_AE, out_dir=tmp_path)


def test_get_study_fails_when_a_sop_class_was_not_offered(
    orthanc, node, subset_files, sr_file, subset_study_uid, tmp_path
) -> None:
    orthanc.upload([*subset_files[:2], sr_file])
    with pytest.raises(
        DeliveryError, match=r"must succeed, got status 0x\w+ \(\d completed, 1 failed"
    ):
        get_study(
            node,
            subset_study_uid,
            calling_ae=ENGINE_AE,
            out_dir=tmp_path,
            sop_classes=[str(CTImageStorage)],
        )


@pytest.fixture
def engine_scp(engine_port: int) -> Iterator[list[str]]:
    """Run the engine's Storage SCP (AE TRIAGE, the port Orthanc knows); yield received UIDs."""
    received: list[str] = []
    lock = threading.Lock()

    def on_store(event: evt.Event) -> int:
        with lock:
            received.append(str(event.dataset.SOPInstanceUID))
        return 0x0000

    ae = AE(ae_title=ENGINE_AE)
    for sop_class in (CTImageStorage, Comprehensive3DSRStorage):
        ae.add_supported_context(sop_class)
    server = ae.start_server(
        ("127.0.0.1", engine_port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    try:
        yield received
    finally:
        server.shutdown()


def test_move_study_sends_every_instance_to_the_engine_scp(
    orthanc, node, subset_files, subset_study_uid, engine_scp
) -> None:
    orthanc.upload(subset_files)

    moved = move_study(node, subset_study_uid, calling_ae=ENGINE_AE, destination_ae=ENGINE_AE)

    assert moved == 16
    assert sorted(engine_scp) == sorted(sop_uid(p) for p in subset_files)


def test_move_study_to_an_unknown_destination_raises(
    orthanc, node, subset_files, subset_study_uid
) -> None:
    orthanc.upload(subset_files[:1])
    with pytest.raises(
        DeliveryError, match=r"C-MOVE of study \w+ from node 'orthanc-test' must.*AE"
    ):
        move_study(node, subset_study_uid, calling_ae=ENGINE_AE, destination_ae="NOBODY")


def test_move_study_of_an_unknown_study_raises(orthanc, node, engine_scp) -> None:
    with pytest.raises(DeliveryError, match=r"\(0 completed, 0 failed\); nothing transferred"):
        move_study(node, generate_uid(), calling_ae=ENGINE_AE, destination_ae=ENGINE_AE)
    assert engine_scp == []


def test_orthanc_flag_target_writes_priority_metadata(
    orthanc, node, subset_files, subset_study_uid
) -> None:
    orthanc.upload(subset_files[:1])
    reasons = ["nodule 9.1 mm (Lung-RADS size 4A), score 0.91 >= 8 mm"]

    make_flag_target(node).set_priority(subset_study_uid, "urgent", reasons)

    base = f"/studies/{orthanc.study_id(subset_study_uid)}/metadata"
    assert orthanc.rest("GET", f"{base}/AIPriority").text == "urgent"
    assert json.loads(orthanc.rest("GET", f"{base}/AIPriorityReasons").text) == reasons


def test_orthanc_flag_target_raises_for_a_study_it_does_not_hold(orthanc, node) -> None:
    with pytest.raises(DeliveryError, match=r"must be stored in node 'orthanc-test' before"):
        make_flag_target(node).set_priority(generate_uid(), "urgent", [])


def test_delivery_fails_during_an_outage_and_succeeds_after_restart(
    orthanc, node, subset_files, sr_file, subset_study_uid
) -> None:
    orthanc.stop()
    try:
        with pytest.raises(DeliveryError, match=r"must be accepted for C-STORE, got aborted"):
            store_files(node, [sr_file], calling_ae=ENGINE_AE)
        with pytest.raises(DeliveryError, match=r"STOW-RS on node 'orthanc-test' must succeed"):
            stow(node, [sr_file])
        with pytest.raises(DeliveryError, match=r"Orthanc REST POST /tools .* must answer"):
            make_flag_target(node).set_priority(subset_study_uid, "urgent", [])
    finally:
        orthanc.start()

    [result] = store_files(node, [sr_file], calling_ae=ENGINE_AE)
    assert result.ok
    assert instance_exists(node, sop_uid(sr_file), study_uid=subset_study_uid)
    assert subset_study_uid in study_uids(orthanc)
