"""Seeded de-identification (PS3.15 Basic Profile via dicognito plus the removals it leaves out)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from tests.factories import FAKE_PATIENT_ID, FAKE_PATIENT_NAME, make_radiograph
from triage.dicom.deidentify import BurnedInAnnotation, Deidentifier

SEED = "0123456789abcdef" * 4


def _radiograph(tmp_path: Path) -> pydicom.Dataset:
    ds = pydicom.dcmread(make_radiograph(tmp_path / "a" / "DX.dcm", pixel_spacing_mm=(0.2, 0.2)))
    ds.StudyDescription = "WRIST LEFT DOE"
    ds.PatientSex, ds.PatientAge = "F", "042Y"
    ds.AccessionNumber = "ACC123"
    ds.DeidentificationMethod = "earlier step"
    block = ds.private_block(0x0011, "ACME 1.0", create=True)
    block.add_new(0x01, "LO", FAKE_PATIENT_NAME)
    return ds


def test_the_same_seed_gives_the_same_pseudonyms_and_another_seed_others(tmp_path: Path) -> None:
    a, b, c = _radiograph(tmp_path), _radiograph(tmp_path), _radiograph(tmp_path)
    original = str(a.StudyInstanceUID)
    Deidentifier(SEED).deidentify(a)
    Deidentifier(SEED).deidentify(b)
    Deidentifier(SEED[::-1]).deidentify(c)
    keys = ("StudyInstanceUID", "SOPInstanceUID", "PatientID", "PatientName", "StudyDate")
    assert [str(a.get(k)) for k in keys] == [str(b.get(k)) for k in keys]
    assert a.StudyInstanceUID != c.StudyInstanceUID
    assert a.StudyInstanceUID != original
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
    assert Deidentifier(SEED).pseudonym_uid(original) == a.StudyInstanceUID


def test_identifiers_free_text_private_tags_and_characteristics_are_gone(tmp_path: Path) -> None:
    ds = _radiograph(tmp_path)
    Deidentifier(SEED).deidentify(ds)
    assert str(ds.PatientName) != FAKE_PATIENT_NAME
    assert ds.PatientID != FAKE_PATIENT_ID
    assert ds.AccessionNumber != "ACC123"
    for keyword in ("StudyDescription", "PatientSex", "PatientAge"):
        assert keyword not in ds
    assert not any(e.tag.is_private for e in ds)
    codes = [(c.CodeValue, c.CodingSchemeDesignator) for c in ds.DeidentificationMethodCodeSequence]
    assert codes == [("113100", "DCM"), ("113107", "DCM")]
    assert ds.DeidentificationMethod[0] == "earlier step"  # earlier steps are kept on record
    assert "PixelSpacing" in ds  # what training needs stays


def test_burned_in_annotation_is_refused(tmp_path: Path) -> None:
    ds = _radiograph(tmp_path)
    ds.BurnedInAnnotation = "YES"
    with pytest.raises(BurnedInAnnotation, match="BurnedInAnnotation must not be YES"):
        Deidentifier(SEED).deidentify(ds)


def test_a_short_seed_is_refused() -> None:
    with pytest.raises(ValueError, match="secret seed must have at least 32 characters, got 6"):
        Deidentifier("secret")
