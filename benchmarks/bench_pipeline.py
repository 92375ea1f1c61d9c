"""End-to-end latency per study (scan -> select -> volume -> model -> findings -> SR), CPU, ONNX.

python -m benchmarks.bench_pipeline
Uses the real LIDC-IDRI-0001 CT and the NEMA CR images from ../shared/data.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from benchmarks._common import shared_data, write_result
from triage.cli import build_engine
from triage.config import Settings
from triage.dicom.reader import scan_folder
from triage.pipeline import analyse_study


def main() -> None:
    """Analyse each sample study twice (first warms up) and report the second run per task."""
    data = shared_data()
    engine = build_engine(Settings())
    rows = []
    for name in ("series", "lidc-idri-0001", "non-chest-ct-totalseg", "nema-wg04-cr"):
        folder = data / name
        if not folder.is_dir():
            continue
        for study in scan_folder(folder).studies:
            analyse_study(study, engine, now=datetime.now(UTC))
            t = time.perf_counter()
            result = analyse_study(study, engine, now=datetime.now(UTC))
            rows.append(
                {
                    "input": name,
                    "priority": result.decision.priority.value,
                    "seconds": round(time.perf_counter() - t, 2),
                    "tasks": {o.task.value: round(o.seconds, 2) for o in result.outcomes},
                }
            )
    write_result("pipeline", {"studies": rows, "command": "python -m benchmarks.bench_pipeline"})


if __name__ == "__main__":
    main()
