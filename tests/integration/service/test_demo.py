"""README command 1's main job, ``triage demo``: service up, studies sent over DICOM, worklist."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_runs_the_service_end_to_end_and_leaves_an_sr_per_study(tmp_path: Path) -> None:
    out = tmp_path / "demo-out"
    no_real_data = tmp_path / "empty"
    no_real_data.mkdir()
    run = subprocess.run(
        [sys.executable, "-m", "triage.cli", "demo", "--out", str(out), "--n-ct", "1",
         "--n-dr", "2", "--shared-data", str(no_real_data), "--timeout-s", "600"],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    assert "AI triage worklist" in output
    assert "worklist page: http://127.0.0.1:" in output
    srs = sorted((out / "service" / "outputs").rglob("*.dcm"))
    assert len(srs) == 3  # one per study: 1 CT + 2 radiographs
    assert {pydicom.dcmread(p).Modality for p in srs} == {"SR"}
    assert len(list((out / "service" / "outputs").rglob("summary.json"))) == 3
