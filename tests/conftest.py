"""Shared fixtures. Real sample data are required: CI always has them, so a missing folder fails."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.netns import ensure_private_netns

REPO_ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    """Run the session in a private network namespace (see tests/netns.py), before any thread."""
    ensure_private_netns()


def find_shared_data() -> Path | None:
    """Return the sample-data folder: ``$TRIAGE_SHARED_DATA``, else ``<repo>/../shared/data``."""
    configured = os.environ.get("TRIAGE_SHARED_DATA")
    candidate = Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def lidc_series_dir(shared_data: Path) -> Path:
    """Return the folder holding the full LIDC-IDRI-0001 CT series (133 slices).

    The README calls it ``lidc-idri-0001/series``; copies also put the slices straight in
    ``lidc-idri-0001/`` or in ``series/``. The first of these that holds ``.dcm`` files wins.
    """
    for candidate in (
        shared_data / "lidc-idri-0001" / "series",
        shared_data / "lidc-idri-0001",
        shared_data / "series",
    ):
        if candidate.is_dir() and any(candidate.glob("*.dcm")):
            return candidate
    raise FileNotFoundError(
        f"the LIDC-IDRI-0001 series must be in lidc-idri-0001/series, lidc-idri-0001/ or series/ "
        f"under {shared_data}, got none of them"
    )


def lidc_consensus_csv(shared_data: Path) -> Path:
    """Return ``nodules_consensus.csv``, next to the series or at the data root."""
    for candidate in (
        shared_data / "lidc-idri-0001" / "nodules_consensus.csv",
        shared_data / "nodules_consensus.csv",
    ):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"nodules_consensus.csv must be under {shared_data}, got none")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Return the real sample-data folder, failing (not skipping) when it is missing."""
    folder = find_shared_data()
    if folder is None:
        pytest.fail(
            "sample data must be available: set TRIAGE_SHARED_DATA or put it at ../shared/data "
            "next to the repository (CI always has it)",
            pytrace=False,
        )
    return folder


@pytest.fixture(scope="session")
def lidc_dir(shared_data: Path) -> Path:
    """Return the folder of the full 133-slice LIDC-IDRI-0001 series."""
    return lidc_series_dir(shared_data)


@pytest.fixture(scope="session")
def lidc_consensus(shared_data: Path) -> Path:
    """Return ``nodules_consensus.csv`` of LIDC-IDRI-0001 (LPS mm centres)."""
    return lidc_consensus_csv(shared_data)


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a models folder with tiny random-weight nodule and fracture models (ONNX + cards)."""
    from tests.model_factories import write_tiny_model  # noqa: PLC0415 - needs torch, only when used

    root = tmp_path_factory.mktemp("models")
    write_tiny_model(root / "lung_nodule_tiny", task="lung_nodule", seed=0)
    write_tiny_model(root / "fracture_tiny", task="fracture", seed=1)
    return root
