"""De-identify DICOM instances for a training export (DICOM PS3.15 Basic Profile).

dicognito does the bulk of the Basic Application Level Confidentiality Profile: every UID (except
class and transfer-syntax UIDs), person name and identifier is replaced and dates / times are
shifted into the past by one offset. Its replacements are a keyed hash of the original value, so
one secret seed gives the *same* pseudonyms across the instances of a study and across export
runs, and nothing can be reversed without the seed. On top of dicognito this module removes what
the Basic Profile removes and dicognito keeps: private attributes, free-text descriptions and
comments, and patient characteristics (age, sex, size, weight); and it records the profile and
the modified-dates option in DeidentificationMethodCodeSequence.

Pixel data are not inspected: an instance whose BurnedInAnnotation is YES is refused, since text
burned into the pixels cannot be removed by editing attributes.
"""

from __future__ import annotations

import warnings

from dicognito.anonymizer import Anonymizer
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence

METHOD_NOTE = "PS3.15 Basic Profile: dicognito + triage dataset export"

# Basic Profile attributes (PS3.15 Table E.1-1, action X / Z / X-or-D) that dicognito leaves as
# they are. Removing (rather than emptying) is allowed for every one of them in a training export.
_REMOVE = (
    "AcquisitionComments",
    "AdditionalPatientHistory",
    "AdmittingDiagnosesDescription",
    "Allergies",
    "DerivationDescription",
    "DeviceSerialNumber",
    "EthnicGroup",
    "FrameComments",
    "IconImageSequence",
    "ImageComments",
    "InterpretationText",
    "MedicalAlerts",
    "OtherPatientNames",
    "PatientAge",
    "PatientBirthName",
    "PatientBirthTime",
    "PatientComments",
    "PatientMotherBirthName",
    "PatientSex",
    "PatientSexNeutered",
    "PatientSize",
    "PatientState",
    "PatientWeight",
    "PerformedProcedureStepDescription",
    "PregnancyStatus",
    "ProtocolName",
    "ReasonForStudy",
    "RequestAttributesSequence",
    "RequestedProcedureDescription",
    "ScheduledProcedureStepDescription",
    "SeriesDescription",
    "SmokingStatus",
    "SpecialNeeds",
    "StudyComments",
    "StudyDescription",
    "TextComments",
)

# (code value, meaning) in DCM: the profile applied and its options (PS3.16 CID 7050).
_METHOD_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
)


class BurnedInAnnotation(ValueError):
    """The instance says text is burned into its pixels; attribute editing cannot remove it."""


class Deidentifier:
    """A seeded de-identifier: same secret seed, same pseudonyms (UIDs, names, IDs, dates).

    Keep one per export run: dicognito's state is only its seed, so two instances with the same
    seed give identical results.
    """

    def __init__(self, secret_seed: str) -> None:
        """Build the anonymizer from the secret seed (never logged, never written to the export).

        Raises:
            ValueError: the seed is shorter than 32 characters (too easy to guess).
        """
        if len(secret_seed) < 32:
            raise ValueError(
                f"secret seed must have at least 32 characters, got {len(secret_seed)}"
            )
        self._anonymizer = Anonymizer(seed=secret_seed)

    def deidentify(self, ds: Dataset) -> None:
        """De-identify ``ds`` in place (its file meta included).

        Raises:
            BurnedInAnnotation: BurnedInAnnotation is YES.
        """
        if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
            raise BurnedInAnnotation(
                "BurnedInAnnotation must not be YES for a de-identified export, got YES"
            )
        if not hasattr(ds, "file_meta"):
            ds.file_meta = FileMetaDataset()
        with warnings.catch_warnings():
            # dicognito probes keywords such as 'LastMenstrualTime' that pydicom does not know
            warnings.filterwarnings(
                "ignore", message="Invalid value '.*' used with the 'in' operator"
            )
            self._anonymizer.anonymize(ds)
        ds.remove_private_tags()
        for keyword in _REMOVE:
            if keyword in ds:
                delattr(ds, keyword)
        _record_method(ds)

    def pseudonym_uid(self, uid: str) -> str:
        """Return the pseudonym the instances' ``uid`` gets (for datalists and the key file)."""
        probe = Dataset()
        probe.file_meta = FileMetaDataset()
        probe.StudyInstanceUID = uid
        self._anonymizer.anonymize(probe)
        return str(probe.StudyInstanceUID)


def _record_method(ds: Dataset) -> None:
    """Add the profile and option codes and a method note, keeping earlier de-identifications."""
    items = list(ds.get("DeidentificationMethodCodeSequence", None) or [])
    present = {str(i.get("CodeValue", "")) for i in items}
    for value, meaning in _METHOD_CODES:
        if value in present:
            continue
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        items.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(items)
    element = ds.get("DeidentificationMethod", None)
    methods = [] if element is None else [element] if isinstance(element, str) else list(element)
    ds.DeidentificationMethod = [*methods, METHOD_NOTE]
