"""Shared helpers for the benchmarks: timing, environment description, result files."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def timed(fn: Callable[[], object], *, repeat: int, warmup: int = 1) -> list[float]:
    """Return wall-clock seconds of ``repeat`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def summary(seconds: list[float]) -> dict[str, float]:
    """Return median, min and max in seconds."""
    return {
        "median_s": round(statistics.median(seconds), 4),
        "min_s": round(min(seconds), 4),
        "max_s": round(max(seconds), 4),
        "n": len(seconds),
    }


def environment() -> dict[str, object]:
    """Describe the machine and library versions the figures were measured with."""
    import numpy  # noqa: PLC0415
    import onnxruntime  # noqa: PLC0415

    env: dict[str, object] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "numpy": numpy.__version__,
        "onnxruntime": onnxruntime.__version__,
        "providers": onnxruntime.get_available_providers(),
    }
    try:
        import torch  # noqa: PLC0415

        env["torch"] = torch.__version__
        env["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        env["torch"] = None
    return env


def write_result(name: str, payload: dict[str, object]) -> Path:
    """Write ``results/<name>.json`` (git-ignored except the committed baseline) and print it."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"environment": environment(), **payload}, indent=2))
    print(json.dumps(payload, indent=2))  # noqa: T201
    return path


def shared_data() -> Path:
    """Return ``$TRIAGE_SHARED_DATA`` or ``../shared/data`` next to the repository."""
    env = os.environ.get("TRIAGE_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
