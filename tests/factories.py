"""Synthetic DICOM built in memory with pydicom and written to a test folder (STYLE H23).

Files are explicit VR little endian (or compressed when asked), with a file meta header, and carry a
fake PatientName / PatientID on purpose so tests can check that neither leaks into messages.

Pixel values encode where they came from, so a test can tell whether slices were sorted and
axes kept: a CT slice generated at position index ``k`` stores ``100 * k + 3 * row + col``
(:func:`ct_stored_values`).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    MediaStorageDirectoryStorage,
    generate_uid,
)
from pydicom.valuerep import DSfloat

from triage.dicom.reader import SeriesInput, scan_folder

FAKE_PATIENT_NAME = "Doe^Jane^Synthetic"
FAKE_PATIENT_ID = "PID-SECRET-4711"

ORIENTATIONS: dict[str, tuple[float, float, float, float, float, float]] = {
    "axial": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    "coronal": (1.0, 0.0, 0.0, 0.0, 0.0, -1.0),
    "sagittal": (0.0, 1.0, 0.0, 0.0, 0.0, -1.0),
}


def uid(*parts: object) -> UID:
    """Return a deterministic UID for the given parts (same parts, same UID)."""
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def ct_stored_values(k: int, rows: int, cols: int) -> npt.NDArray[np.int16]:
    """Return the stored values of the CT slice generated at position index ``k``."""
    r, c = np.mgrid[0:rows, 0:cols]
    return np.asarray(100 * k + 3 * r + c, dtype=np.int16)


def unit_normal(orientation: Sequence[float]) -> npt.NDArray[np.float64]:
    """Return row cosine x column cosine."""
    return np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:], float))


def _ds(values: Iterable[float]) -> list[DSfloat]:
    return [DSfloat(v, auto_format=True) for v in values]


def _file_meta(sop_class_uid: str, sop_instance_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


def _base_dataset(sop_class_uid: str, sop_instance_uid: str, modality: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = _file_meta(sop_class_uid, sop_instance_uid)
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    ds.Modality = modality
    ds.PatientName = FAKE_PATIENT_NAME
    ds.PatientID = FAKE_PATIENT_ID
    ds.StudyDate = "20240102"
    ds.SamplesPerPixel = 1
    return ds


def _set_pixels(ds: Dataset, pixels: npt.NDArray[np.integer], transfer_syntax: str) -> None:
    """Store ``pixels`` in ``ds``, compressed with ``transfer_syntax`` when it is not native."""
    ds.Rows, ds.Columns = (int(n) for n in pixels.shape[-2:])
    if transfer_syntax == JPEGBaseline8Bit:
        buffer = io.BytesIO()
        Image.fromarray(pixels.astype(np.uint8), mode="L").save(buffer, "JPEG", quality=95)
        ds.PixelData = encapsulate([buffer.getvalue()])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.LossyImageCompression = "01"
        return
    if UID(transfer_syntax).is_compressed:
        ds.compress(transfer_syntax, pixels, generate_instance_uid=False)
        return
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()


def make_ct_series(
    directory: Path,
    n_slices: int,
    *,
    spacing_mm: float = 2.5,
    thickness_mm: float | None = 2.5,
    orientation: str | Sequence[float] = "axial",
    tilt_deg: float = 0.0,
    missing: Iterable[int] = (),
    duplicate: Iterable[int] = (),
    positions_mm: Sequence[float] | None = None,
    rescale_slope: float = 1.0,
    rescale_intercept: float = -1024.0,
    body_part: str = "CHEST",
    pixel_spacing_mm: tuple[float, float] | None = (0.7, 0.8),
    rows: int = 12,
    cols: int = 10,
    origin_lps_mm: tuple[float, float, float] = (-100.0, -120.0, -300.0),
    modality: str = "CT",
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL"),
    series_description: str = "Lung 1.0",
    study_description: str = "CT CHEST",
    series_number: int = 2,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_class_uid: str = CTImageStorage,
    transfer_syntax: str = ExplicitVRLittleEndian,
    overrides: Mapping[int, Mapping[str, object]] | None = None,
    seed: int = 0,
) -> Path:
    """Write a classic CT series (one file per slice) into ``directory`` and return the folder.

    Slice ``k`` sits ``positions_mm[k]`` (default ``k * spacing_mm``) along the slice normal from
    ``origin_lps_mm``; with ``tilt_deg`` the stack also drifts along the column cosine, as a
    gantry-tilted acquisition does. ``missing`` drops slice indices, ``duplicate`` writes them twice
    (new SOP Instance UID, same position), ``overrides`` sets header keywords per slice index (a
    Rows / Columns override also resizes that slice's pixels). File names and InstanceNumbers are
    shuffled so that only ImagePositionPatient gives the order.
    """
    directory.mkdir(parents=True, exist_ok=True)
    cosines = ORIENTATIONS[orientation] if isinstance(orientation, str) else tuple(orientation)
    normal = unit_normal(cosines)
    drift = math.tan(math.radians(tilt_deg)) * np.asarray(cosines[3:], float)
    offsets = (
        list(positions_mm)
        if positions_mm is not None
        else [k * spacing_mm for k in range(n_slices)]
    )
    study_uid = study_uid or uid("study", directory)
    series_uid = series_uid or uid("series", directory, series_number)
    dropped = set(missing)
    copies = [(k, 0) for k in range(len(offsets)) if k not in dropped]
    copies += [(k, 1) for k in duplicate]
    order = np.random.default_rng(seed).permutation(len(copies))
    for (k, copy), shuffled in zip(copies, order, strict=True):
        sop_uid = uid("sop", series_uid, k, copy)
        ds = _base_dataset(sop_class_uid, sop_uid, modality)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.FrameOfReferenceUID = uid("for", study_uid)
        ds.BodyPartExamined = body_part
        ds.StudyDescription, ds.SeriesDescription = study_description, series_description
        ds.SeriesNumber, ds.InstanceNumber = series_number, int(shuffled) + 1
        ds.ImageType = list(image_type)
        if thickness_mm is not None:
            ds.SliceThickness = DSfloat(thickness_mm, auto_format=True)
        position = np.asarray(origin_lps_mm) + offsets[k] * (normal + drift)
        ds.ImagePositionPatient = _ds(position)
        ds.ImageOrientationPatient = _ds(cosines)
        if pixel_spacing_mm is not None:
            ds.PixelSpacing = _ds(pixel_spacing_mm)
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope = DSfloat(rescale_slope, auto_format=True)
        ds.RescaleIntercept = DSfloat(rescale_intercept, auto_format=True)
        extra = dict((overrides or {}).get(k, {}))
        shape = (int(str(extra.pop("Rows", rows))), int(str(extra.pop("Columns", cols))))
        for keyword, value in extra.items():
            setattr(ds, keyword, value)
        _set_pixels(ds, ct_stored_values(k, *shape), transfer_syntax)
        ds.save_as(directory / f"IM{int(shuffled):04d}.dcm", enforce_file_format=True)
    return directory


def make_enhanced_ct(
    path: Path,
    n_frames: int,
    *,
    spacing_mm: float = 1.25,
    pixel_spacing_mm: tuple[float, float] = (0.6, 0.9),
    orientation: str = "axial",
    rows: int = 8,
    cols: int = 6,
    rescale_intercept: float = -1000.0,
    origin_lps_mm: tuple[float, float, float] = (10.0, 20.0, 30.0),
    seed: int = 1,
) -> Path:
    """Write an Enhanced CT multi-frame file whose frames are stored in shuffled order.

    Frame ``f`` holds the slice generated at position index ``k = order[f]``, so a reader must sort
    by the per-frame ImagePositionPatient to recover ``k``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = _base_dataset(EnhancedCTImageStorage, uid("enhanced", path), "CT")
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uid("study", path), uid("series", path)
    ds.SeriesNumber, ds.InstanceNumber, ds.BodyPartExamined = 5, 1, "CHEST"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.NumberOfFrames = n_frames
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    cosines = ORIENTATIONS[orientation]
    shared = Dataset()
    measures, plane, transform = Dataset(), Dataset(), Dataset()
    measures.PixelSpacing, measures.SliceThickness = _ds(pixel_spacing_mm), DSfloat(spacing_mm)
    plane.ImageOrientationPatient = _ds(cosines)
    transform.RescaleSlope, transform.RescaleIntercept = DSfloat(1), DSfloat(rescale_intercept)
    transform.RescaleType = "HU"
    shared.PixelMeasuresSequence = DicomSequence([measures])
    shared.PlaneOrientationSequence = DicomSequence([plane])
    shared.PixelValueTransformationSequence = DicomSequence([transform])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    order = np.random.default_rng(seed).permutation(n_frames)
    normal = unit_normal(cosines)
    per_frame = []
    for k in order:
        item, position = Dataset(), Dataset()
        position.ImagePositionPatient = _ds(np.asarray(origin_lps_mm) + k * spacing_mm * normal)
        item.PlanePositionSequence = DicomSequence([position])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    frames = np.stack([ct_stored_values(int(k), rows, cols) for k in order])
    _set_pixels(ds, frames, ExplicitVRLittleEndian)
    ds.save_as(path, enforce_file_format=True)
    return path


def radiograph_stored_values(rows: int, cols: int, bits_stored: int) -> npt.NDArray[np.uint16]:
    """Return a ramp that spans the whole stored range (0 and 2**bits - 1 both occur)."""
    ramp = np.linspace(0, 2**bits_stored - 1, rows * cols).round().reshape(rows, cols)
    return np.asarray(ramp, dtype=np.uint16)


def make_radiograph(
    path: Path,
    *,
    rows: int = 20,
    cols: int = 16,
    modality: str = "DX",
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    pixel_spacing_mm: Sequence[float] | None = None,
    imager_pixel_spacing_mm: Sequence[float] | None = None,
    magnification: float | None = None,
    rescale: tuple[float, float] | None = None,
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY"),
    body_part: str = "WRIST",
    presentation_intent: str = "FOR PRESENTATION",
    sop_class_uid: str = DigitalXRayImageStorageForPresentation,
    number_of_frames: int | None = None,
    series_number: int = 1,
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> Path:
    """Write one single-frame CR/DX image (unsigned, ``bits_stored`` bits) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = _base_dataset(sop_class_uid, uid("rg", path), modality)
    ds.StudyInstanceUID = uid("study", path.parent)
    ds.SeriesInstanceUID = uid("series", path.parent, series_number)
    ds.SeriesNumber, ds.InstanceNumber = series_number, 1
    ds.BodyPartExamined, ds.ImageType = body_part, list(image_type)
    ds.PresentationIntentType = presentation_intent
    ds.PhotometricInterpretation = photometric
    bits_allocated = 8 if bits_stored <= 8 else 16
    ds.BitsAllocated, ds.BitsStored = bits_allocated, bits_stored
    ds.HighBit, ds.PixelRepresentation = bits_stored - 1, 0
    for keyword, value in (
        ("PixelSpacing", pixel_spacing_mm),
        ("ImagerPixelSpacing", imager_pixel_spacing_mm),
    ):
        if value is not None:
            setattr(ds, keyword, _ds(value))
    if magnification is not None:
        ds.EstimatedRadiographicMagnificationFactor = DSfloat(magnification, auto_format=True)
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = (DSfloat(v, auto_format=True) for v in rescale)
    pixels = radiograph_stored_values(rows, cols, bits_stored)
    if number_of_frames is not None:
        ds.NumberOfFrames = number_of_frames
        pixels = np.stack([pixels] * number_of_frames)
    _set_pixels(ds, pixels.astype(np.uint8 if bits_allocated == 8 else np.uint16), transfer_syntax)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_non_dicom(path: Path) -> Path:
    """Write a text file that is not DICOM."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("not a DICOM file\n", encoding="utf-8")
    return path


def write_truncated_dicom(path: Path, source: Path) -> Path:
    """Write the first 300 bytes of a DICOM file (preamble + part of the meta header)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(source.read_bytes()[:300])
    return path


def write_corrupt_dicom(path: Path, source: Path) -> Path:
    """Write ``source``'s preamble and file meta followed by a sequence that runs off the file end.

    pydicom raises (``OSError``) on this even with ``stop_before_pixels=True``.
    """
    meta = dcmread(source, stop_before_pixels=True).file_meta
    meta_end = 132 + 12 + int(meta.FileMetaInformationGroupLength)
    broken = b"\x08\x00\x15\x11SQ\x00\x00\xff\xff\xff\xff" + b"\x01\x02\x03\x04" * 10
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(source.read_bytes()[:meta_end] + broken)
    return path


def write_dicomdir(directory: Path) -> Path:
    """Write a minimal file named DICOMDIR with the Media Storage Directory SOP class."""
    directory.mkdir(parents=True, exist_ok=True)
    ds = Dataset()
    ds.file_meta = _file_meta(MediaStorageDirectoryStorage, uid("dicomdir", directory))
    ds.FileSetID = "SYNTH"
    ds.save_as(directory / "DICOMDIR", enforce_file_format=True)
    return directory / "DICOMDIR"


def only_series(directory: Path) -> SeriesInput:
    """Scan ``directory`` and return its single series (asserting there is exactly one)."""
    result = scan_folder(directory)
    assert len(result.studies) == 1, result
    assert len(result.studies[0].series) == 1, result.studies[0]
    return result.studies[0].series[0]
