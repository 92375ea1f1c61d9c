"""The Triton runtime against a real tritonserver on loopback: same head outputs, same findings.

The server is the ``tritonserver`` binary bundled in the ``nvidia-pytriton`` wheel (installed with
``--no-deps``: only the binary is used, and the wheel's ``numpy<2`` pin conflicts with the lock).
That build has only Triton's Python backend, so the repository written by
``write_model_repository(..., backend="python")`` serves each ``model.onnx`` with onnxruntime inside
the server; clients still speak KServe v2 gRPC to a real Triton process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from tests.orthanc import free_port
from triage.cli import build_engine
from triage.config import Settings
from triage.core.errors import ModelUnavailable
from triage.dicom.reader import scan_folder
from triage.inference.card import load_card
from triage.inference.runtime import RuntimeOptions, make_runtime
from triage.inference.triton_config import write_model_repository
from triage.pipeline import analyse_study
from triage.synth.studies import make_dr_study

pytestmark = pytest.mark.integration
import tritonclient.grpc as grpcclient  # noqa: E402 - the 'triton' extra is part of `make install`

START_TIMEOUT_S = 60.0
PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
MODELS = {"lung_nodule_tiny": (1, 1, 64, 48, 32), "fracture_tiny": (1, 1, 160, 128)}


def _tritonserver_dist() -> Path:
    spec = importlib.util.find_spec("pytriton")  # locates the wheel; never imports it
    dist = (
        Path(next(iter(spec.submodule_search_locations or []))) / "tritonserver" if spec else None
    )
    if dist is None or not (dist / "bin" / "tritonserver").is_file():
        pytest.fail(
            "the tritonserver binary of the nvidia-pytriton wheel must be installed "
            "(`make install` does it: pip install --no-deps nvidia-pytriton==0.7.0), got none",
            pytrace=False,
        )
    return dist


def _die_with_parent() -> None:
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@pytest.fixture(scope="module")
def triton_url(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start tritonserver (Python backend) on a free loopback port; yield its gRPC address."""
    dist = _tritonserver_dist()
    work = tmp_path_factory.mktemp("triton")
    write_model_repository(tiny_models_dir, work / "repo", backend="python")
    # The Python backend needs the stub built for this interpreter next to libtriton_python.so.
    shutil.copytree(dist / "backends", work / "backends")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
    shutil.copy2(stub, work / "backends" / "python" / stub.name)
    port = free_port()
    env = {
        **os.environ,
        # the stub embeds libpython and finds this venv (numpy, onnxruntime) via python3 on PATH
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "LD_LIBRARY_PATH": str(dist.parents[1] / "nvidia_pytriton.libs"),
    }
    command = [
        str(dist / "bin" / "tritonserver"),
        f"--model-repository={work / 'repo'}",
        f"--backend-directory={work / 'backends'}",
        "--allow-http=false",
        "--allow-metrics=false",
        "--grpc-address=127.0.0.1",
        f"--grpc-port={port}",
        "--exit-on-error=true",
        "--exit-timeout-secs=5",
    ]
    log_path = work / "tritonserver.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(  # noqa: S603 - fixed command line
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            # only a foreign call runs in the child (libc is loaded already): no fork deadlock
            preexec_fn=_die_with_parent,  # noqa: PLW1509
        )
    address = f"127.0.0.1:{port}"
    try:
        _wait_ready(proc, address, log_path)
        yield address
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _wait_ready(proc: subprocess.Popen[bytes], address: str, log_path: Path) -> None:
    client = grpcclient.InferenceServerClient(url=address)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"tritonserver exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}"
            )
        try:
            if client.is_server_ready(client_timeout=1.0):
                return
        except Exception:  # noqa: BLE001 - not listening yet
            pass
        time.sleep(0.2)
    pytest.fail(f"tritonserver not ready in {START_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}")


@pytest.mark.parametrize("folder", sorted(MODELS))
def test_triton_runtime_gives_the_onnx_runtime_head_outputs(
    folder: str, triton_url: str, tiny_models_dir: Path
) -> None:
    model_dir = tiny_models_dir / folder
    card = load_card(model_dir)
    onnx = make_runtime("onnx", card, model_dir, RuntimeOptions())
    triton = make_runtime("triton", card, model_dir, RuntimeOptions(triton_url=triton_url))
    image = np.random.default_rng(7).random(MODELS[folder], dtype=np.float32)

    got = triton.infer({card.io.input_name: image})
    want = onnx.infer({card.io.input_name: image})

    assert triton.provider == f"triton:{triton_url}"
    assert list(got) == list(want) == list(card.io.output_names)
    for name in card.io.output_names:
        assert got[name].dtype == np.float32
        assert got[name].shape == want[name].shape
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-5, err_msg=name)


def test_triton_engine_gives_the_onnx_engine_findings_on_a_radiograph(
    triton_url: str, tiny_models_dir: Path, tmp_path: Path
) -> None:
    study_dir = make_dr_study(tmp_path / "in", 3, kind="limb", n_fractures=1).study_dir
    (study,) = scan_folder(study_dir).studies
    now = datetime(2026, 1, 1, tzinfo=UTC)
    policy = tmp_path / "policy.yaml"  # every candidate of the random model becomes a finding
    policy.write_text("version: 1\nlung_nodule: {min_score: 0.0}\nfracture: {min_score: 0.0}\n")
    triton = Settings(runtime="triton", triton_url=triton_url, models_dir=tiny_models_dir)
    engine = build_engine(triton, policy_file=policy)
    reference = build_engine(Settings(models_dir=tiny_models_dir), policy_file=policy)
    assert engine.unavailable == {}

    got = analyse_study(study, engine, now=now)
    want = analyse_study(study, reference, now=now)

    assert [(o.failure, o.provider) for o in got.outcomes] == [(None, f"triton:{triton_url}")]
    assert len(want.findings) >= 5
    assert got.findings == want.findings
    assert got.decision == want.decision


def test_card_whose_model_the_server_lacks_is_unavailable(
    triton_url: str, tiny_models_dir: Path
) -> None:
    model_dir = tiny_models_dir / "fracture_tiny"
    card = load_card(model_dir).model_copy(update={"name": "not-served"})
    with pytest.raises(ModelUnavailable, match="Triton model 'not-served' must be READY"):
        make_runtime("triton", card, model_dir, RuntimeOptions(triton_url=triton_url))


def test_card_with_other_weights_than_the_served_model_is_unavailable(
    triton_url: str, tiny_models_dir: Path
) -> None:
    model_dir = tiny_models_dir / "fracture_tiny"
    card = load_card(model_dir)
    other = card.model_copy(
        update={"weights": card.weights.model_copy(update={"sha256": "f" * 64})}
    )
    with pytest.raises(ModelUnavailable, match="must serve weights sha256 ffffffffffff"):
        make_runtime("triton", other, model_dir, RuntimeOptions(triton_url=triton_url))


def test_unreachable_server_is_model_unavailable_with_the_fix(tiny_models_dir: Path) -> None:
    model_dir = tiny_models_dir / "fracture_tiny"
    url = f"127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(
        ModelUnavailable, match=rf"Triton server at {url} must be reachable.*TRIAGE_TRITON_URL"
    ):
        make_runtime("triton", load_card(model_dir), model_dir, RuntimeOptions(triton_url=url))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (None, "runtime triton needs the server's gRPC address, got none"),
        ("http://127.0.0.1:8000", "must be Triton's gRPC address host:port"),
    ],
)
def test_missing_or_http_address_is_model_unavailable(
    url: str | None, message: str, tiny_models_dir: Path
) -> None:
    model_dir = tiny_models_dir / "fracture_tiny"
    with pytest.raises(ModelUnavailable, match=message):
        make_runtime("triton", load_card(model_dir), model_dir, RuntimeOptions(triton_url=url))


def test_engine_with_an_unreachable_server_reports_each_model_unavailable(
    tiny_models_dir: Path,
) -> None:
    url = f"127.0.0.1:{free_port()}"
    engine = build_engine(Settings(runtime="triton", triton_url=url, models_dir=tiny_models_dir))
    assert engine.models == {}
    assert len(engine.unavailable) == 2
    assert all("must be reachable" in reason for reason in engine.unavailable.values())
