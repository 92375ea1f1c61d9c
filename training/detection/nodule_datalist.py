"""Real CT training data: MONAI / LUNA16 datalists, or DICOM studies + a LUNA16 annotations.csv.

Both go through the serving code: the image becomes a :class:`~triage.imaging.volume.Volume`
(DICOM series through ``triage.dicom``, NIfTI / MHD / NRRD through SimpleITK) and then
``triage.inference.lung_nodule.preprocess``, so a model trains on exactly what it is served.

World frame: boxes and annotation centres are patient **LPS** millimetres (DICOM / ITK world):
the frame ``triage synth ct`` writes, LUNA16's ``annotations.csv`` uses (MHD offsets are ITK
world) and MONAI's LUNA16 datalists use (the bundle reads images with ITK, turns the RAS affine
back into LPS with ``AffineBoxToImageCoordinated(affine_lps_to_ras=True)`` and only then maps
boxes to voxels). A datalist in RAS would put every box on the mirror side of the patient.

Boxes end as MONAI StandardMode voxel boxes ``[i0, j0, k0, i1, j1, k1]`` of the preprocessed grid,
voxel centres at integer indices: the convention of ``lung_nodule.boxes_from_centers`` (synthetic
training) and ``lung_nodule.to_findings`` (serving).
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from functools import partial
from itertools import product
from pathlib import Path

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from training.detection import datalist
from training.detection.config import DatalistData, DicomCsvData
from training.detection.crops import Sample
from triage.core.errors import InvalidSeries
from triage.dicom.reader import SeriesInput, StudyInput, scan_files, scan_folder
from triage.dicom.series import load_ct_volume
from triage.imaging.geometry import lps_to_voxel
from triage.imaging.resample import from_sitk
from triage.imaging.volume import Volume
from triage.inference.lung_nodule import preprocess
from triage.inference.spec import PreprocessSpec

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
_DICOM_SUFFIXES = ("", ".dcm", ".dicom")
LUNA16_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")


@dataclass(frozen=True)
class CtItem:
    """One CT training image and its nodule boxes (``cccwhd``, LPS mm).

    ``source`` is a NIfTI / MHD / NRRD file, a DICOM file, or a folder holding one CT series;
    ``files`` (when given) are the exact DICOM files of the series, so a folder of many studies is
    scanned once, not once per series.
    """

    source: Path
    boxes_cccwhd_lps_mm: tuple[tuple[float, ...], ...]
    files: tuple[Path, ...] = ()


def world_boxes_to_voxels(
    boxes_cccwhd_lps_mm: npt.ArrayLike, affine_lps: npt.NDArray[np.float64]
) -> F32:
    """Return StandardMode voxel boxes ``(N, 6)`` of world ``cccwhd`` boxes (LPS mm).

    The eight corners of each world box are mapped to continuous voxel indices (voxel centres at
    integers) and the box is their min / max, so flipped or permuted axes (e.g. the RAS grid the
    nodule model uses) come out right.

    >>> affine = np.diag([-2.0, -2.0, 4.0, 1.0])  # RAS grid: i -> right (-x), j -> anterior (-y)
    >>> world_boxes_to_voxels([[-10.0, -20.0, 40.0, 6.0, 6.0, 8.0]], affine).tolist()
    [[3.5, 8.5, 9.0, 6.5, 11.5, 11.0]]
    """
    boxes = np.asarray(boxes_cccwhd_lps_mm, dtype=np.float64).reshape(-1, 6)
    if not len(boxes):
        return np.zeros((0, 6), dtype=np.float32)
    signs = np.array(list(product((-0.5, 0.5), repeat=3)))  # (8, 3)
    corners = boxes[:, None, :3] + signs[None, :, :] * boxes[:, None, 3:]  # (N, 8, 3)
    ijk = lps_to_voxel(affine_lps, corners.reshape(-1, 3)).reshape(-1, 8, 3)
    return np.concatenate([ijk.min(axis=1), ijk.max(axis=1)], axis=1).astype(np.float32)


def load_ct(item: CtItem) -> Volume:
    """Read a CT item into a HU volume with its LPS affine.

    Raises:
        InvalidSeries: a DICOM source does not hold exactly one CT series, or that series is
            unusable (see ``load_ct_volume``).
        ValueError: an image file that is not 3-D.
    """
    if item.files:
        return _one_ct_series(scan_files(item.files).studies)
    if item.source.is_dir() or item.source.suffix.lower() in _DICOM_SUFFIXES:
        return _one_ct_series(scan_folder(item.source).studies)
    image = sitk.ReadImage(str(item.source), sitk.sitkFloat32)
    if image.GetDimension() != 3:
        raise ValueError(f"CT image must be 3-D, got {image.GetDimension()}-D")
    return from_sitk(image)


def _one_ct_series(studies: tuple[StudyInput, ...]) -> Volume:
    series = [s for st in studies for s in st.series if s.modality == "CT"]
    if len(series) != 1:
        raise InvalidSeries(
            f"a datalist image must hold exactly one CT series, got {len(series)}; "
            "point the entry at one series folder or file"
        )
    return load_ct_volume(series[0])


def ct_sample(index: int, prep: PreprocessSpec, *, items: tuple[CtItem, ...]) -> Sample:
    """Return item ``index`` preprocessed as serving does, with its boxes on the network grid."""
    item = items[index]
    prepared = preprocess(load_ct(item), prep)
    return Sample(
        prepared.image, world_boxes_to_voxels(item.boxes_cccwhd_lps_mm, prepared.affine_lps)
    )


def datalist_items(data: DatalistData) -> list[CtItem]:
    """Return the CT items of the configured datalist section."""
    entries = datalist.read_section(
        data.datalist, section=data.section, base_dir=data.base_dir, box_values=6
    )
    return [CtItem(e.image, e.boxes) for e in entries]


def read_annotations(path: Path) -> dict[str, list[tuple[float, float, float, float]]]:
    """Return ``seriesuid -> [(x, y, z, diameter), ...]`` from a LUNA16 annotations.csv (LPS mm).

    Raises:
        ValueError: the header is not ``seriesuid,coordX,coordY,coordZ,diameter_mm``.
    """
    out: dict[str, list[tuple[float, float, float, float]]] = {}
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ())[:5] != LUNA16_COLUMNS:
            raise ValueError(
                f"annotations.csv header must start with {','.join(LUNA16_COLUMNS)}, "
                f"got {reader.fieldnames}"
            )
        for row in reader:
            out.setdefault(row["seriesuid"], []).append(
                (
                    float(row["coordX"]),
                    float(row["coordY"]),
                    float(row["coordZ"]),
                    float(row["diameter_mm"]),
                )
            )
    return out


def dicom_csv_items(data: DicomCsvData) -> list[CtItem]:
    """Return one item per CT series under ``dicom_dir``, boxed from the annotations (cubes).

    Raises:
        FileNotFoundError: the folder or the CSV is missing.
        ValueError: the CSV names series that are not in the folder.
    """
    if not data.annotations_csv.is_file():
        raise FileNotFoundError(
            f"annotations_csv must be an existing file, got {str(data.annotations_csv)!r}"
        )
    nodules = read_annotations(data.annotations_csv)
    series: list[SeriesInput] = [
        s for st in scan_folder(data.dicom_dir).studies for s in st.series if s.modality == "CT"
    ]
    missing = set(nodules) - {s.series_uid for s in series}
    if missing:
        raise ValueError(
            f"every seriesuid in annotations.csv must be a CT series under dicom_dir, got "
            f"{len(missing)} that are not; check the folder or drop those rows"
        )
    return [
        CtItem(
            s.paths[0].parent,
            tuple((x, y, z, d, d, d) for x, y, z, d in nodules.get(s.series_uid, [])),
            files=s.paths,
        )
        for s in series
    ]


def build_samples(
    items: list[CtItem], prep: PreprocessSpec, *, cache: Path, workers: int
) -> list[Sample]:
    """Return preprocessed samples of the items, cached under ``cache`` (float16)."""
    sources = [(item.files or (item.source,), item.boxes_cccwhd_lps_mm) for item in items]
    key = datalist.cache_key("ct", sources, prep)
    make = partial(ct_sample, items=tuple(items))
    samples = datalist.build_cached(make, key, len(items), prep, cache=cache, workers=workers)
    logger.info(
        "real CT samples ready",
        extra={"images": len(samples), "boxes": sum(len(s.boxes) for s in samples)},
    )
    return samples
