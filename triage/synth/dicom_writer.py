"""Write synthetic phantoms as conformant DICOM: CT series and CR/DX radiographs.

The files are meant to exercise the real input path (series grouping, rescale, geometry, vendor
quirks), so the choices a reader must cope with vary per study: rescale intercept (-1024, -1000,
-8192), manufacturer and kernel, transfer syntax (explicit VR little endian, RLE, JPEG 2000 or
JPEG-LS lossless), MONOCHROME1 vs MONOCHROME2, PixelSpacing vs ImagerPixelSpacing, bits stored.
Identity is deterministic: every UID is derived from the seed (STYLE H19), so regenerating a
study gives the same identifiers (see :mod:`triage.synth.study_meta`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    UID,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from triage.synth.ct_phantom import CtPhantom
from triage.synth.dr_phantom import DrPhantom
from triage.synth.study_meta import SyntheticStudyMeta, synthetic_uid

IMPLEMENTATION_CLASS_UID = "2.25.{}".format(
    uuid.uuid5(uuid.NAMESPACE_OID, "triage-synth|implementation").int
)
COMPRESSIONS: dict[str, UID] = {
    "none": ExplicitVRLittleEndian,
    "rle": RLELossless,
    "jpeg2000": JPEG2000Lossless,
    "jpegls": JPEGLSLossless,
}
# BodyPartExamined -> SNOMED CT (code, meaning), for the DX AnatomicRegionSequence.
_ANATOMY = {
    "CHEST": ("51185008", "Thorax"),
    "TIBIA": ("12611008", "Tibia"),
    "FOREARM": ("14975008", "Forearm"),
    "FEMUR": ("71341001", "Femur"),
    "HUMERUS": ("85050009", "Humerus"),
    "HAND": ("85562004", "Hand"),
}

_VIEWS = {"AP": ("399348003", "antero-posterior"), "PA": ("399300004", "postero-anterior")}


def _file_dataset(sop_class: UID, sop_uid_text: str) -> Dataset:
    sop_uid = UID(sop_uid_text)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    ds.file_meta.ImplementationVersionName = "TRIAGE_SYNTH"
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    return ds


def _patient_study(ds: Dataset, study: SyntheticStudyMeta, description: str) -> None:
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = study.patient_birth_date
    ds.PatientSex = study.patient_sex
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "Synthetic phantom; no patient data"
    ds.StudyInstanceUID = study.study_instance_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = study.study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = study.study_time
    ds.AccessionNumber = study.accession_number
    ds.StudyID = study.study_id
    ds.ReferringPhysicianName = study.referring_physician_name
    ds.StudyDescription = description
    ds.Manufacturer = study.manufacturer
    ds.ManufacturerModelName = study.manufacturer_model_name
    ds.InstitutionName = study.institution_name
    ds.DeviceSerialNumber = f"SYN{study.seed % 100000:05d}"
    ds.SoftwareVersions = "triage-synth"
    ds.KVP = study.kvp


def _save(ds: Dataset, path: Path, pixels: np.ndarray, compression: str) -> Path:
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {sorted(COMPRESSIONS)}, got {compression!r}")
    if compression != "none":
        ds.compress(COMPRESSIONS[compression], pixels, generate_instance_uid=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _ct_slice(
    phantom: CtPhantom,
    k: int,
    *,
    study: SyntheticStudyMeta,
    series_uid: str,
    series_number: int,
    intercept: float,
) -> Dataset:
    affine = phantom.volume.affine_lps
    sop_uid = synthetic_uid(series_uid, k)
    ds = _file_dataset(CTImageStorage, sop_uid)
    _patient_study(ds, study, "CT CHEST (synthetic phantom)")
    ds.Modality = "CT"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = (
        f"Synthetic chest {phantom.slice_thickness_mm:.2f} mm {study.convolution_kernel}"
    )
    ds.BodyPartExamined = "CHEST"
    ds.PatientPosition = "HFS"
    ds.FrameOfReferenceUID = synthetic_uid(study.study_instance_uid, "frame-of-reference")
    ds.PositionReferenceIndicator = ""
    ds.InstanceNumber = k + 1
    ds.AcquisitionNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    col_dir, row_dir = affine[:3, 0], affine[:3, 1]
    ds.ImageOrientationPatient = [
        *_ds_list(col_dir / np.linalg.norm(col_dir)),
        *_ds_list(row_dir / np.linalg.norm(row_dir)),
    ]
    position = affine @ np.array([0.0, 0.0, float(k), 1.0])
    ds.ImagePositionPatient = _ds_list(position[:3])
    ds.SliceLocation = _ds_num(position[2])
    di, dj, dk = phantom.volume.spacing_ijk_mm
    ds.PixelSpacing = [_ds_num(dj), _ds_num(di)]  # row spacing (between rows), column spacing
    ds.SliceThickness = _ds_num(phantom.slice_thickness_mm)
    ds.SpacingBetweenSlices = _ds_num(dk)
    ds.ConvolutionKernel = study.convolution_kernel
    ds.RescaleIntercept = _ds_num(intercept)
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter, ds.WindowWidth = [-600, 40], [1500, 400]
    ds.WindowCenterWidthExplanation = ["LUNG", "MEDIASTINUM"]
    return ds


def _ds_num(x: float) -> str:
    """Return a DS value string (at most 16 characters)."""
    text = f"{float(x):.6g}"
    return "0" if text == "-0" else text


def _ds_list(values: Sequence[float] | np.ndarray) -> list[str]:
    return [_ds_num(v) for v in np.asarray(values, dtype=np.float64).ravel()]


def _set_pixels(ds: Dataset, arr: np.ndarray, *, bits_stored: int, photometric: str) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = arr.shape
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if arr.dtype == np.int16 else 0
    ds.PixelData = np.ascontiguousarray(arr).tobytes()


def write_ct_series(
    phantom: CtPhantom,
    out_dir: Path,
    *,
    study: SyntheticStudyMeta,
    series_number: int = 2,
    rescale_intercept: float | None = None,
    compression: str = "none",
    shuffle_names: bool = False,
) -> list[Path]:
    """Write a CT phantom as one CT Image Storage file per slice, ``CT_<k:04d>.dcm``.

    Args:
        phantom: the volume (HU) with an affine whose columns are the i (row direction), j (column
            direction) and k (slice) steps in LPS mm.
        out_dir: folder for the files (created).
        study: patient/study/equipment identity; the series and SOP UIDs derive from it.
        series_number: DICOM SeriesNumber; also part of the series UID.
        rescale_intercept: stored = HU - intercept; defaults to ``study.rescale_intercept``.
        compression: "none" (explicit VR little endian), "rle", "jpeg2000" or "jpegls" (lossless).
        shuffle_names: give files a seed-derived permutation of the names, so file order is not
            slice order (readers must sort by geometry).

    Returns:
        The written paths in slice order (k = 0 first, the most inferior slice).
    """
    intercept = study.rescale_intercept if rescale_intercept is None else float(rescale_intercept)
    series_uid = synthetic_uid(study.study_instance_uid, "series", series_number)
    hu = phantom.volume.array
    n = hu.shape[0]
    names = np.arange(n)
    if shuffle_names:
        names = np.random.default_rng([study.seed, series_number]).permutation(n)
    paths: list[Path] = []
    for k in range(n):
        stored = np.clip(np.rint(hu[k]) - intercept, -32768, 32767).astype(np.int16)
        ds = _ct_slice(
            phantom,
            k,
            study=study,
            series_uid=series_uid,
            series_number=series_number,
            intercept=intercept,
        )
        _set_pixels(ds, stored, bits_stored=16, photometric="MONOCHROME2")
        paths.append(_save(ds, out_dir / f"CT_{int(names[k]):04d}.dcm", stored, compression))
    return paths


def _dr_dataset(
    phantom: DrPhantom, *, study: SyntheticStudyMeta, modality: str, series_number: int
) -> Dataset:
    sop_class = (
        DigitalXRayImageStorageForPresentation
        if modality == "DX"
        else ComputedRadiographyImageStorage
    )
    series_uid = synthetic_uid(study.study_instance_uid, "series", series_number)
    ds = _file_dataset(sop_class, synthetic_uid(series_uid, 0))
    part = phantom.body_part
    _patient_study(ds, study, f"XR {part} (synthetic phantom)")
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = f"{part} {phantom.view_position}"
    ds.InstanceNumber = 1
    ds.BodyPartExamined = part
    ds.ViewPosition = phantom.view_position
    ds.PatientOrientation = list(phantom.patient_orientation)
    if modality == "DX":  # ImageLaterality is in the DX IOD only; it replaces series Laterality
        ds.ImageLaterality = phantom.laterality
        ds.PositionerType = "NONE"
        ds.AcquisitionContextSequence = DicomSequence([])
        view_code, view_meaning = _VIEWS.get(phantom.view_position, _VIEWS["AP"])
        view = _code(view_code, view_meaning)
        view.ViewModifierCodeSequence = DicomSequence([])
        ds.ViewCodeSequence = DicomSequence([view])
    elif phantom.laterality in ("L", "R"):  # CR: series Laterality, required for paired parts
        ds.Laterality = phantom.laterality
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.AnatomicRegionSequence = DicomSequence(
        [_code(*_ANATOMY.get(part, ("38866009", "Body part")))]
    )
    return ds


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "SCT", meaning
    return item


def write_radiograph(
    phantom: DrPhantom,
    path: Path,
    *,
    study: SyntheticStudyMeta,
    modality: str = "DX",
    photometric: str = "MONOCHROME2",
    spacing_tag: str = "ImagerPixelSpacing",
    bits_stored: int = 12,
    series_number: int = 1,
    compression: str = "none",
) -> Path:
    """Write a radiograph phantom as CR Image Storage or DX Image Storage - For Presentation.

    The 0..1 image is scaled to ``bits_stored`` unsigned integers; for MONOCHROME1 it is inverted so
    that a viewer honouring the photometric interpretation shows bone bright.

    Args:
        phantom: the radiograph.
        path: output file (parents created).
        study: patient/study/equipment identity.
        modality: "DX" or "CR".
        photometric: "MONOCHROME1" or "MONOCHROME2".
        spacing_tag: "ImagerPixelSpacing" writes only the detector-plane spacing (equal to the
            phantom's); "PixelSpacing" writes the calibrated patient-plane spacing (the
            phantom's) in PixelSpacing, plus, for DX where it is mandatory, ImagerPixelSpacing
            magnified by a seed-derived 1.0-1.15 and the GEOMETRY calibration type.
        bits_stored: 10..16.
        series_number: DICOM SeriesNumber; part of the series UID.
        compression: "none", "rle", "jpeg2000" or "jpegls" (lossless).
    """
    _check_dr_args(
        modality=modality, photometric=photometric, spacing_tag=spacing_tag, bits_stored=bits_stored
    )
    ds = _dr_dataset(phantom, study=study, modality=modality, series_number=series_number)
    max_value = (1 << bits_stored) - 1
    stored = np.rint(np.clip(phantom.image, 0.0, 1.0) * max_value).astype(np.uint16)
    if photometric == "MONOCHROME1":
        stored = (max_value - stored).astype(np.uint16)
    _set_pixels(ds, stored, bits_stored=bits_stored, photometric=photometric)
    ds.WindowCenter = _ds_num(round(max_value / 2))
    ds.WindowWidth = _ds_num(max_value)
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    _spacing(ds, phantom, study=study, modality=modality, spacing_tag=spacing_tag)
    if modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = 1 if photometric == "MONOCHROME1" else -1
        ds.PresentationLUTShape = "INVERSE" if photometric == "MONOCHROME1" else "IDENTITY"
        ds.DetectorType = "SCINTILLATOR"
    return _save(ds, path, stored, compression)


def _check_dr_args(*, modality: str, photometric: str, spacing_tag: str, bits_stored: int) -> None:
    if modality not in ("DX", "CR"):
        raise ValueError(f"modality must be 'DX' or 'CR', got {modality!r}")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"photometric must be 'MONOCHROME1' or 'MONOCHROME2', got {photometric!r}")
    if spacing_tag not in ("PixelSpacing", "ImagerPixelSpacing"):
        raise ValueError(
            f"spacing_tag must be 'PixelSpacing' or 'ImagerPixelSpacing', got {spacing_tag!r}"
        )
    if not 10 <= bits_stored <= 16:
        raise ValueError(f"bits_stored must be in 10..16, got {bits_stored}")


def _spacing(
    ds: Dataset, phantom: DrPhantom, *, study: SyntheticStudyMeta, modality: str, spacing_tag: str
) -> None:
    spacing = _ds_list(phantom.pixel_spacing_mm)
    if spacing_tag == "ImagerPixelSpacing":
        ds.ImagerPixelSpacing = spacing
        return
    ds.PixelSpacing = spacing
    ds.PixelSpacingCalibrationType = "GEOMETRY"
    ds.PixelSpacingCalibrationDescription = "Synthetic phantom: patient-plane spacing"
    if modality == "DX":
        magnification = 1.0 + 0.15 * float(np.random.default_rng([study.seed, 11]).random())
        ds.ImagerPixelSpacing = _ds_list(np.asarray(phantom.pixel_spacing_mm) * magnification)
        ds.EstimatedRadiographicMagnificationFactor = _ds_num(magnification)
