"""A result sink that writes each study's SR and a JSON summary into a folder.

Folders and files are named from hashes of UIDs, never from raw DICOM values (no PHI in paths).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from triage.core.study import hash_uid
from triage.dicom.outputs import write_sr
from triage.pipeline import StudyResult
from triage.reporting import summary_json


@dataclass
class FolderSink:
    """Write ``<out>/<study hash>/{sr.dcm, summary.json}``; remembers what it wrote."""

    out_dir: Path
    written: dict[str, tuple[Path | None, Path]] = field(default_factory=dict)

    def publish(self, result: StudyResult) -> None:
        """Write the SR (atomically, by highdicom/pydicom) and the summary JSON."""
        folder = self.out_dir / hash_uid(result.study_uid)
        folder.mkdir(parents=True, exist_ok=True)
        sr_path = write_sr(result.sr, folder) if result.sr is not None else None
        for stale in folder.glob("*.dcm"):  # one current SR per study: drop an earlier run's report
            if stale != sr_path and re.fullmatch(r"[0-9a-f]{64}\.dcm", stale.name):
                stale.unlink()
        summary = folder / "summary.json"
        tmp = summary.with_suffix(".tmp")
        tmp.write_text(json.dumps(summary_json(result, sr_path), indent=2))
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        tmp.replace(summary)
        self.written[result.study_uid] = (sr_path, summary)
