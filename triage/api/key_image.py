"""Key images: the slice or radiograph of one finding, windowed, with its box drawn, as a PNG.

A nodule is shown on the axial slice through its centre (``k`` from the centre of ``box_ijk``) of
the CT series in the spool, in a lung window; a fracture on its radiograph. Both are read through
the same loaders the pipeline uses (``load_ct_volume``, ``load_radiograph``), so the voxel indices
in the result mean the same thing here. Rendered files are cached under the data dir, named by the
study's UID hash, the finding index, a digest of the result and the size: a new analysis (new
result, new SR) gets new files, and no patient value ever appears in a file name.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw
from sqlalchemy import select

from triage.api.errors import NotFound, NotRenderable
from triage.api.results import JsonObject, findings_of, parse_result
from triage.core.study import hash_uid
from triage.dicom.radiograph import load_radiograph
from triage.dicom.reader import scan_folder
from triage.dicom.series import load_ct_volume
from triage.imaging.volume import Volume
from triage.imaging.windowing import scale_window
from triage.store.db import Store
from triage.store.schema import Instance, Study
from triage.store.spool import Spool

BOX_RGB = (255, 176, 0)  # amber: far from every grey, visible on lung and on bone
LUNG_WINDOW_HU = (-1350.0, 150.0)  # centre -600 HU, width 1500 HU
RADIOGRAPH_PERCENTILES = (1.0, 99.0)
MIN_SIZE_PX, MAX_SIZE_PX, DEFAULT_SIZE_PX = 64, 1024, 512


@dataclass(frozen=True, slots=True)
class Picture:
    """A grey image and a box on it, before scaling.

    Attributes:
        grey: display values 0..255, shape (rows, columns).
        box_px: (x0, y0, x1, y1) in pixel-corner coordinates ((0, 0) is the top-left corner).
        pixel_aspect: width of a pixel over its height (column spacing / row spacing).
    """

    grey: npt.NDArray[np.uint8]
    box_px: tuple[float, float, float, float]
    pixel_aspect: float = 1.0


def _to_uint8(unit: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    return np.asarray(np.round(unit * 255.0), dtype=np.uint8)


def _box(finding: JsonObject, key: str, dims: int) -> tuple[list[float], list[float]]:
    box = finding.get(key)
    lo = box.get("min") if isinstance(box, dict) else None
    hi = box.get("max") if isinstance(box, dict) else None
    if not (isinstance(lo, list) and isinstance(hi, list) and len(lo) == len(hi) == dims):
        raise NotRenderable(f"the finding must have a {dims}-D {key} box, got none")
    return [float(v) for v in lo], [float(v) for v in hi]


def ct_picture(volume: Volume, finding: JsonObject) -> Picture:
    """Return the slice through the centre of a nodule's box, lung-windowed, with the box.

    ``box_ijk`` is in continuous voxel coordinates whose integers are voxel centres, so the
    centre slice is the rounded mean of the k corners, and pixel corners sit half a voxel out.
    """
    lo, hi = _box(finding, "box_ijk", 3)
    n_k = volume.array.shape[0]
    k = min(max(round((lo[2] + hi[2]) / 2.0), 0), n_k - 1)
    grey = _to_uint8(scale_window(volume.array[k], *LUNG_WINDOW_HU))
    spacing_i, spacing_j, _ = volume.spacing_ijk_mm
    box = (lo[0] + 0.5, lo[1] + 0.5, hi[0] + 0.5, hi[1] + 0.5)
    return Picture(grey, box, pixel_aspect=spacing_i / spacing_j if spacing_j > 0 else 1.0)


def radiograph_picture(values: npt.NDArray[np.float32], finding: JsonObject) -> Picture:
    """Return a radiograph windowed between robust percentiles, with the fracture's box."""
    lo, hi = _box(finding, "box_col_row_px", 2)
    low, high = (float(v) for v in np.percentile(values, RADIOGRAPH_PERCENTILES))
    grey = _to_uint8(scale_window(values, low, high if high > low else low + 1.0))
    return Picture(grey, (lo[0], lo[1], hi[0], hi[1]))


def render_png(picture: Picture, *, size_px: int) -> bytes:
    """Return the picture as a PNG whose longer side is ``size_px``, the box drawn in BOX_RGB.

    The box is drawn just outside its extent (so the lesion's edge stays visible) and is at
    least a few pixels wide, so a 3 mm nodule is still marked on a thumbnail.
    """
    rows, cols = picture.grey.shape
    width_mm, height_mm = cols * picture.pixel_aspect, float(rows)
    scale = size_px / max(width_mm, height_mm)
    out_w, out_h = max(1, round(width_mm * scale)), max(1, round(height_mm * scale))
    image = Image.fromarray(picture.grey).convert("RGB")
    image = image.resize((out_w, out_h), Image.Resampling.LANCZOS)
    sx, sy = out_w / cols, out_h / rows
    line = max(2, round(size_px / 160))
    x0, y0, x1, y1 = picture.box_px
    cx, cy = (x0 + x1) / 2 * sx, (y0 + y1) / 2 * sy
    half_w = max((x1 - x0) * sx / 2, 3.0 * line) + line
    half_h = max((y1 - y0) * sy / 2, 3.0 * line) + line
    ImageDraw.Draw(image).rectangle(
        (cx - half_w, cy - half_h, cx + half_w, cy + half_h), outline=BOX_RGB, width=line
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


@dataclass(frozen=True, slots=True)
class _Target:
    uid_hash: str
    finding: Mapping[str, object]
    digest: str


class KeyImages:
    """Renders key images on demand and caches the PNG files; one render at a time.

    A CT render reads the whole series (about 100 MB of float32 for 133 slices), so renders are
    serialised: concurrent thumbnail requests queue instead of multiplying memory.
    """

    def __init__(self, store: Store, spool: Spool, cache_dir: Path) -> None:
        """Keep where results, instances and cached files are."""
        self.store = store
        self.spool = spool
        self.cache_dir = cache_dir
        self._lock = threading.Lock()

    def png(self, study_uid: str, finding: int, *, size_px: int) -> Path:
        """Return the path of the PNG of ``finding`` (rendered now unless cached).

        Raises:
            NotFound: no such study, or it has no finding with this index.
            NotRenderable: the finding has no usable box, or its images left the spool.
            InvalidSeries: the CT series or radiograph cannot be read.
        """
        if not MIN_SIZE_PX <= size_px <= MAX_SIZE_PX:
            raise ValueError(f"size_px must be {MIN_SIZE_PX}..{MAX_SIZE_PX}, got {size_px}")
        target = self._target(study_uid, finding)
        prefix = f"{target.uid_hash}-f{finding}-"
        path = self.cache_dir / f"{prefix}{target.digest}-{size_px}.png"
        if path.is_file():
            return path
        with self._lock:
            if path.is_file():
                return path
            data = render_png(self._picture(study_uid, target.finding), size_px=size_px)
            self._write(path, data, keep=f"{prefix}{target.digest}-", stale=prefix)
        return path

    def _target(self, study_uid: str, index: int) -> _Target:
        with self.store.session() as s:
            study = s.get(Study, study_uid)
            if study is None:
                raise NotFound(
                    f"study must exist, got an unknown study UID (tag {hash_uid(study_uid)})"
                )
            text, sr_uid, uid_hash = study.result_json, study.sr_sop_uid, study.uid_hash
        findings = findings_of(parse_result(text))
        if not 0 <= index < len(findings):
            raise NotFound(
                f"finding must be an index below {len(findings)} for this study, got {index}"
                + ("" if findings else ": the study has no findings")
            )
        digest = hashlib.sha256(f"{sr_uid}\0{text}".encode()).hexdigest()[:16]
        return _Target(uid_hash, findings[index], digest)

    def _picture(self, study_uid: str, finding: Mapping[str, object]) -> Picture:
        kind = finding.get("type")
        if kind == "nodule":
            return ct_picture(self._volume(study_uid, str(finding.get("series_uid", ""))), finding)
        if kind == "fracture":
            path = self._instance_path(study_uid, str(finding.get("sop_instance_uid", "")))
            return radiograph_picture(load_radiograph(path).array, finding)
        raise NotRenderable(f"finding type must be nodule or fracture, got {str(kind)[:20]!r}")

    def _volume(self, study_uid: str, series_uid: str) -> Volume:
        with self.store.session() as s:
            rel = s.scalars(
                select(Instance.path)
                .where(Instance.study_uid == study_uid, Instance.series_uid == series_uid)
                .limit(1)
            ).first()
        if rel is None:
            raise NotRenderable("the finding's CT series must still be in the spool, got none")
        folder = (self.spool.root / rel).parent  # one folder per series (Spool layout)
        for study in scan_folder(folder).studies:
            for series in study.series:
                if series.series_uid == series_uid:
                    return load_ct_volume(series)
        raise NotRenderable("the finding's CT series must be readable in the spool, got none")

    def _instance_path(self, study_uid: str, sop_uid: str) -> Path:
        with self.store.session() as s:
            rel = s.scalars(
                select(Instance.path).where(
                    Instance.study_uid == study_uid, Instance.sop_uid == sop_uid
                )
            ).first()
        path = None if rel is None else self.spool.root / rel
        if path is None or not path.is_file():
            raise NotRenderable("the finding's radiograph must still be in the spool, got none")
        return path

    def _write(self, path: Path, data: bytes, *, keep: str, stale: str) -> None:
        """Write atomically; drop this finding's files from an earlier result (``stale`` prefix)."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        for old in self.cache_dir.glob(f"{stale}*.png"):
            if not old.name.startswith(keep):
                old.unlink(missing_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
        tmp.write_bytes(data)
        os.replace(tmp, path)
