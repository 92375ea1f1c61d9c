"""Write received instances durably: hashed names, fsync, atomic rename (acknowledge only after).

A file name is derived from the SHA-256 of the study, series and SOP UIDs, never from raw DICOM
values, so no patient data appears in paths. The write is: temp file in the same folder → fsync →
rename over the final name → fsync the folder. A crash leaves either the whole file or a temp file
(swept at start), never a half-written instance under its final name.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

TEMP_SUFFIX = ".partial"


def _h(uid: str) -> str:
    return hashlib.sha256(uid.encode("ascii", "replace")).hexdigest()[:24]


@dataclass(frozen=True)
class Spool:
    """A folder of received instances: ``<root>/<study hash>/<series hash>/<sop hash>.dcm``."""

    root: Path

    def relative_path(self, study_uid: str, series_uid: str, sop_uid: str) -> str:
        """Return the spool-relative path for an instance (deterministic, PHI-free).

        >>> Spool(Path("/s")).relative_path("1.2", "1.2.3", "1.2.3.4").count("/")
        2
        """
        return f"{_h(study_uid)}/{_h(series_uid)}/{_h(sop_uid)}.dcm"

    def study_dir(self, study_uid: str) -> Path:
        """Return the folder that holds one study's instances."""
        return self.root / _h(study_uid)

    def put(self, data: bytes, *, study_uid: str, series_uid: str, sop_uid: str) -> str:
        """Store ``data`` durably and return its spool-relative path (overwrites the same SOP)."""
        rel = self.relative_path(study_uid, series_uid, sop_uid)
        write_durably(self.root / rel, data)
        return rel

    def free_fraction(self) -> float:
        """Return the free share of the spool's file system, 0..1."""
        self.root.mkdir(parents=True, exist_ok=True)
        usage = shutil.disk_usage(self.root)
        return usage.free / usage.total if usage.total else 0.0

    def sweep_partials(self) -> int:
        """Delete temp files a crash left behind; return how many (never acknowledged ones)."""
        if not self.root.exists():
            return 0
        n = 0
        for p in self.root.rglob(f"*{TEMP_SUFFIX}"):
            p.unlink(missing_ok=True)
            n += 1
        return n


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that it survives a crash once this returns.

    Raises:
        OSError: the disk is full or not writable; nothing is left under ``path``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}{TEMP_SUFFIX}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Flush a folder's entries (the rename) to disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
