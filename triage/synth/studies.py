"""Whole synthetic studies on disk: DICOM files plus ground truth, for demos, tests and training.

Each study goes to ``<out_root>/<folder>/`` where the folder name is a hash of the StudyInstanceUID
(never a raw DICOM value, as for the receive spool). Every acquisition choice (voxel size, slice
thickness and spacing, matrix, z coverage; CR/DX, MONOCHROME1/2, spacing tag, bits stored;
transfer syntax, shuffled file names) is drawn from the seed, so a set of studies covers what
readers meet in practice, and the same seed rewrites the same study.

CT cost is dominated by the phantom render (about 0.35 s per million voxels on an idle core, and
twice that on a busy machine), so the grid is capped at ``max_voxels`` (20 M by default:
512 x 512 x 76, 448 x 448 x 99, 384 x 384 x 135) and 220 slices; thin-slice or large-matrix studies
then cover less z, as a limited-coverage scan would.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from triage.synth.ct_phantom import generate_ct_phantom
from triage.synth.dicom_writer import write_ct_series, write_radiograph
from triage.synth.dr_fractures import FractureTruth
from triage.synth.dr_phantom import generate_radiograph
from triage.synth.study_meta import SyntheticStudyMeta, synthetic_uid
from triage.synth.truth import (
    FRACTURE_LABEL,
    NODULE_LABEL,
    CtDatalistEntry,
    DrAnnotationRow,
    DrDatalistEntry,
    NoduleRow,
    nodule_box_cccwhd,
    write_ct_datalist,
    write_dr_csv,
    write_dr_datalist,
    write_luna16_csv,
)

MAX_SLICES = 220
MAX_VOXELS = 20_000_000
# JPEG 2000 stays available on request but is not drawn for CT: ~50 ms a slice to encode.
T = TypeVar("T")
_CT_COMPRESSIONS = ("none", "none", "none", "none", "rle", "jpegls")
_DR_COMPRESSIONS = ("none", "none", "none", "rle", "jpeg2000", "jpegls")


@dataclass(frozen=True)
class SyntheticStudy:
    """A study written to disk and what is in it.

    Attributes:
        study_dir: the study's folder (holds the DICOM files of its one series).
        study_uid: StudyInstanceUID.
        series_uid: SeriesInstanceUID.
        kind: "ct" or "dr".
        files: the DICOM files (CT: in slice order).
        nodules: CT ground truth (LUNA16 rows, LPS mm); empty for radiographs.
        fractures: radiograph ground truth (pixel boxes); empty for CT.
        body_part: BodyPartExamined.
        seed: the seed that made it.
        sop_instance_uid: the radiograph's SOPInstanceUID; empty for CT.
    """

    study_dir: Path
    study_uid: str
    series_uid: str
    kind: str
    files: tuple[Path, ...]
    nodules: tuple[NoduleRow, ...] = ()
    fractures: tuple[FractureTruth, ...] = ()
    body_part: str = "CHEST"
    seed: int = 0
    sop_instance_uid: str = ""


@dataclass(frozen=True)
class DemoSet:
    """A folder of synthetic studies with LUNA16 / MONAI-style truth files."""

    root: Path
    ct_studies: tuple[SyntheticStudy, ...]
    dr_studies: tuple[SyntheticStudy, ...]
    annotations_csv: Path
    datalist_json: Path
    dr_annotations_csv: Path
    dr_datalist_json: Path


def study_folder_name(study_uid: str) -> str:
    """Return the folder name of a study: the first 16 hex digits of the UID's SHA-256."""
    return hashlib.sha256(study_uid.encode("ascii")).hexdigest()[:16]


@dataclass(frozen=True)
class CtGrid:
    """The reconstruction grid of a synthetic CT series."""

    spacing_ijk_mm: tuple[float, float, float]
    shape_ijk: tuple[int, int, int]
    slice_thickness_mm: float


def ct_acquisition(
    seed: int, *, max_slices: int = MAX_SLICES, max_voxels: int = MAX_VOXELS
) -> CtGrid:
    """Return the CT grid drawn from ``seed``.

    In-plane 0.6-0.9 mm, a 320-512 matrix covering 300-380 mm, slice thickness 0.6-2.5 mm with
    spacing equal to it or overlapping (0.8 x), 250-320 mm of z, capped by the slice and voxel
    budgets.
    """
    rng = np.random.default_rng([seed, 21])
    pixel_mm = round(float(rng.uniform(0.6, 0.9)), 4)
    matrix = int(np.clip(round(rng.uniform(300, 380) / pixel_mm / 32) * 32, 320, 512))
    thickness = round(float(rng.uniform(0.6, 2.5)), 2)
    spacing_z = thickness if rng.random() < 0.6 else round(0.8 * thickness, 3)
    n_slices = int(rng.uniform(250, 320) / spacing_z)
    n_slices = max(8, min(n_slices, max_slices, max_voxels // (matrix * matrix)))
    return CtGrid((pixel_mm, pixel_mm, spacing_z), (matrix, matrix, n_slices), thickness)


def make_ct_study(
    out_root: Path,
    seed: int,
    *,
    n_nodules: int | None = None,
    max_slices: int = MAX_SLICES,
    max_voxels: int = MAX_VOXELS,
    compression: str | None = None,
) -> SyntheticStudy:
    """Render and write one synthetic chest CT study.

    Args:
        out_root: the data root; the study goes to ``out_root/<hash of the study UID>/``.
        seed: seeds the phantom, the acquisition and the identity.
        n_nodules: nodules to place; random 0-5 when None.
        max_slices: cap on the number of slices (thin slices then cover less z).
        max_voxels: cap on the voxel count, which bounds the render time.
        compression: transfer syntax ("none", "rle", "jpeg2000", "jpegls"); drawn from the seed
            when None.
    """
    rng = np.random.default_rng([seed, 22])
    grid = ct_acquisition(seed, max_slices=max_slices, max_voxels=max_voxels)
    phantom = generate_ct_phantom(
        seed,
        spacing_ijk_mm=grid.spacing_ijk_mm,
        shape_ijk=grid.shape_ijk,
        slice_thickness_mm=grid.slice_thickness_mm,
        n_nodules=n_nodules,
    )
    meta = SyntheticStudyMeta.from_seed(seed, kind="ct")
    study_dir = out_root / study_folder_name(meta.study_instance_uid)
    chosen = compression or str(rng.choice(_CT_COMPRESSIONS))
    files = write_ct_series(
        phantom, study_dir, study=meta, compression=chosen, shuffle_names=bool(rng.random() < 0.3)
    )
    series_uid = synthetic_uid(meta.study_instance_uid, "series", 2)
    nodules = tuple(NoduleRow(series_uid, *n.center_lps_mm, n.diameter_mm) for n in phantom.nodules)
    return SyntheticStudy(
        study_dir,
        meta.study_instance_uid,
        series_uid,
        "ct",
        tuple(files),
        nodules=nodules,
        seed=seed,
    )


def make_dr_study(
    out_root: Path,
    seed: int,
    *,
    kind: str,
    n_fractures: int | None = None,
    body_part: str | None = None,
    compression: str | None = None,
) -> SyntheticStudy:
    """Render and write one synthetic radiograph study (one image).

    Modality (CR/DX), photometric interpretation, spacing tag, bits stored and transfer syntax are
    drawn from the seed; see :func:`~triage.synth.dicom_writer.write_radiograph`.

    Args:
        out_root: the data root; the study goes to ``out_root/<hash of the study UID>/``.
        seed: seeds the phantom, the acquisition and the identity.
        kind: "chest" or "limb".
        n_fractures: fractures to place; random (40% none, else 1-3) when None.
        body_part: limb part ("TIBIA", "FOREARM", "FEMUR", "HUMERUS", "HAND"); random when None.
        compression: transfer syntax; drawn from the seed when None.
    """
    phantom = generate_radiograph(seed, kind=kind, n_fractures=n_fractures, body_part=body_part)
    rng = np.random.default_rng([seed, 23])
    meta = SyntheticStudyMeta.from_seed(seed, kind="dr")
    study_dir = out_root / study_folder_name(meta.study_instance_uid)
    modality = "DX" if rng.random() < 0.65 else "CR"
    path = write_radiograph(
        phantom,
        study_dir / f"{modality}_0001.dcm",
        study=meta,
        modality=modality,
        photometric="MONOCHROME1" if rng.random() < 0.3 else "MONOCHROME2",
        spacing_tag="PixelSpacing" if rng.random() < 0.5 else "ImagerPixelSpacing",
        bits_stored=int(rng.choice([10, 12, 12, 14, 15, 16])),
        compression=compression or str(rng.choice(_DR_COMPRESSIONS)),
    )
    series_uid = synthetic_uid(meta.study_instance_uid, "series", 1)
    return SyntheticStudy(
        study_dir,
        meta.study_instance_uid,
        series_uid,
        "dr",
        (path,),
        fractures=phantom.fractures,
        body_part=phantom.body_part,
        seed=seed,
        sop_instance_uid=synthetic_uid(series_uid, 0),
    )


def _split(items: Sequence[T]) -> dict[str, list[T]]:
    """Put every fifth study into "validation", the rest into "training" (deterministic)."""
    out: dict[str, list[T]] = {"training": [], "validation": []}
    for i, item in enumerate(items):
        out["validation" if i % 5 == 4 else "training"].append(item)
    return out


def ct_datalist_entry(study: SyntheticStudy, root: Path) -> CtDatalistEntry:
    """Return the MONAI datalist entry of a CT study: folder (relative to ``root``), boxes."""
    boxes = tuple(nodule_box_cccwhd(n) for n in study.nodules)
    return CtDatalistEntry(
        study.study_dir.relative_to(root).as_posix(), boxes, (NODULE_LABEL,) * len(boxes)
    )


def dr_datalist_entry(study: SyntheticStudy, root: Path) -> DrDatalistEntry:
    """Return the datalist entry of a radiograph study: file (relative to ``root``), boxes."""
    boxes = tuple(f.box_col_row for f in study.fractures)
    kinds = tuple(f.kind for f in study.fractures)
    image = study.files[0].relative_to(root).as_posix()
    return DrDatalistEntry(image, boxes, (FRACTURE_LABEL,) * len(boxes), kinds)


def dr_annotation_rows(study: SyntheticStudy, root: Path) -> list[DrAnnotationRow]:
    """Return the csv rows of a radiograph study: one per fracture, or one ``none`` row."""
    image = study.files[0].relative_to(root).as_posix()
    rows = [
        DrAnnotationRow(image, study.sop_instance_uid, study.body_part, f.box_col_row, f.kind)
        for f in study.fractures
    ]
    return rows or [DrAnnotationRow(image, study.sop_instance_uid, study.body_part, None, "none")]


def make_demo_set(
    out_root: Path, *, seed: int, n_ct: int, n_dr: int, ct_max_voxels: int = MAX_VOXELS
) -> DemoSet:
    """Write ``n_ct`` CT and ``n_dr`` radiograph studies (chest and limb alternating) and truth.

    Truth files in ``out_root``: ``annotations.csv`` (LUNA16 style), ``datalist.json`` (MONAI CT
    detection datalist, world cccwhd boxes), ``dr_annotations.csv`` and ``dr_datalist.json`` (pixel
    xyxy boxes). Image paths in the datalists are relative to ``out_root``; every fifth study is in
    the "validation" section. ``ct_max_voxels`` bounds each CT grid (render time).
    """
    ct = tuple(
        make_ct_study(out_root, seed * 10_000 + i, max_voxels=ct_max_voxels) for i in range(n_ct)
    )
    dr = tuple(
        make_dr_study(out_root, seed * 10_000 + 5_000 + i, kind="chest" if i % 2 == 0 else "limb")
        for i in range(n_dr)
    )
    nodules = [row for s in ct for row in s.nodules]
    ct_entries = [ct_datalist_entry(s, out_root) for s in ct]
    dr_entries = [dr_datalist_entry(s, out_root) for s in dr]
    dr_rows = [row for s in dr for row in dr_annotation_rows(s, out_root)]
    return DemoSet(
        root=out_root,
        ct_studies=ct,
        dr_studies=dr,
        annotations_csv=write_luna16_csv(nodules, out_root / "annotations.csv"),
        datalist_json=write_ct_datalist(_split(ct_entries), out_root / "datalist.json"),
        dr_annotations_csv=write_dr_csv(dr_rows, out_root / "dr_annotations.csv"),
        dr_datalist_json=write_dr_datalist(_split(dr_entries), out_root / "dr_datalist.json"),
    )
