"""Identity of synthetic studies: patient, study, equipment and UIDs, all derived from a seed.

Identity is an input (STYLE H19): every UID is a name-based UUID of the seed and a purpose, so
regenerating a study gives the same identifiers, and two seeds never share one. Patient names are
obviously synthetic ("PHANTOM^CT^<seed>"); equipment (manufacturer, model, kernel, kVp) and the CT
rescale intercept vary per study, as they do between real sites.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import numpy as np

RESCALE_INTERCEPTS = (-1024.0, -1000.0, -8192.0)
# (Manufacturer, ManufacturerModelName, soft-tissue kernel, lung kernel)
CT_VENDORS = (
    ("GE MEDICAL SYSTEMS", "Revolution CT", "STANDARD", "LUNG"),
    ("SIEMENS", "SOMATOM Force", "Br40f", "Bl57f"),
    ("Philips", "iCT 256", "B", "YC"),
    ("TOSHIBA", "Aquilion ONE", "FC13", "FC51"),
)
DR_VENDORS = (
    ("Carestream Health", "DRX-Evolution"),
    ("FUJIFILM Corporation", "FDR D-EVO II"),
    ("Agfa", "DX-D 600"),
    ("Philips", "DigitalDiagnost"),
    ("SIEMENS", "Ysio Max"),
)


def synthetic_uid(*parts: object) -> str:
    """Return a ``2.25.`` UID derived only from ``parts``, so regeneration gives the same UID.

    A name-based UUID (RFC 4122 v5) as an integer, as STYLE H19 derives output UIDs. Not
    ``generate_uid(prefix=None, entropy_srcs=...)``: pydicom ignores the entropy when the prefix is
    None and returns a random UUID4 UID.

    >>> synthetic_uid("ct", 1) == synthetic_uid("ct", 1) != synthetic_uid("ct", 2)
    True
    """
    name = "|".join(["triage-synth", *map(str, parts)])
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, name).int}"


@dataclass(frozen=True)
class SyntheticStudyMeta:
    """Patient, study and equipment identity for one synthetic study, all derived from a seed."""

    seed: int
    kind: str  # "ct" | "dr"
    patient_name: str
    patient_id: str
    patient_sex: str
    patient_birth_date: str
    study_date: str  # YYYYMMDD
    study_time: str  # HHMMSS
    accession_number: str
    study_id: str
    referring_physician_name: str
    institution_name: str
    study_instance_uid: str
    manufacturer: str
    manufacturer_model_name: str
    convolution_kernel: str
    kvp: float
    rescale_intercept: float

    @classmethod
    def from_seed(cls, seed: int, *, kind: str) -> SyntheticStudyMeta:
        """Return the identity of study ``seed`` of ``kind`` ("ct" or "dr"); the same every time."""
        if kind not in ("ct", "dr"):
            raise ValueError(f"kind must be 'ct' or 'dr', got {kind!r}")
        rng = np.random.default_rng([seed, 7, 0 if kind == "ct" else 1])
        day = dt.date(2020, 1, 1) + dt.timedelta(days=int(rng.integers(0, 1800)))
        birth = dt.date(1935, 1, 1) + dt.timedelta(days=int(rng.integers(0, 365 * 65)))
        secs = int(rng.integers(7 * 3600, 22 * 3600))
        if kind == "ct":
            vendor: tuple[str, ...] = CT_VENDORS[int(rng.integers(len(CT_VENDORS)))]
            model, kernel, kvp = (
                vendor[1],
                vendor[2 + int(rng.integers(2))],
                float(rng.choice([100, 120, 120, 140])),
            )
        else:
            vendor = DR_VENDORS[int(rng.integers(len(DR_VENDORS)))]
            model, kernel, kvp = vendor[1], "", float(rng.integers(55, 126))
        return cls(
            seed=seed,
            kind=kind,
            patient_name=f"PHANTOM^{kind.upper()}^{seed}",
            patient_id=f"PHANTOM-{seed}",
            patient_sex=str(rng.choice(["F", "M", "O"])),
            patient_birth_date=birth.strftime("%Y%m%d"),
            study_date=day.strftime("%Y%m%d"),
            study_time=f"{secs // 3600:02d}{secs // 60 % 60:02d}{secs % 60:02d}",
            accession_number=f"SYN{kind.upper()}{seed:09d}"[:16],
            study_id=f"{seed % 10**8}",
            referring_physician_name="SYNTHETIC^REFERRER",
            institution_name="Triage Synthetic Phantom Lab",
            study_instance_uid=synthetic_uid(kind, seed, "study"),
            manufacturer=vendor[0],
            manufacturer_model_name=model,
            convolution_kernel=kernel,
            kvp=kvp,
            rescale_intercept=float(RESCALE_INTERCEPTS[int(rng.integers(len(RESCALE_INTERCEPTS)))]),
        )
