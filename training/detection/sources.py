"""Turn a config's ``data`` section into training samples, and describe it for the model card.

``synthetic`` renders phantoms exactly as ``python -m training.detection.run_demo`` does;
``datalist`` and ``dicom_csv`` read real images through the serving preprocessing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from training.detection import fracture_datalist, nodule_datalist
from training.detection.config import DatalistData, DicomCsvData, SyntheticData, TrainConfig
from training.detection.crops import Sample
from training.detection.run_demo import build_pool_for

REAL_DATA_INTENDED_USE = (
    "NOT FOR DIAGNOSTIC USE. Research model trained with `triage train` on local data (see "
    "training_data); it has not been clinically validated. Validate it on your own population "
    "before any use, and keep a radiologist in the loop."
)


def build_samples(cfg: TrainConfig) -> list[Sample]:
    """Return the training samples the config names (cached under its ``cache_dir``).

    Raises:
        ValueError: ``dicom_csv`` with the fracture task (LUNA16 annotations are CT nodules), an
            empty data set, or a malformed datalist / CSV.
        FileNotFoundError: a datalist, CSV, folder or image that does not exist.
    """
    data = cfg.data
    if isinstance(data, SyntheticData):
        return build_pool_for(cfg)
    if isinstance(data, DicomCsvData) and cfg.task != "lung_nodule":
        raise ValueError(
            f"data.kind dicom_csv must be used with task lung_nodule, got task {cfg.task}; "
            "use kind: datalist with 2-D pixel boxes for radiographs"
        )
    samples: list[Sample]
    if cfg.task == "lung_nodule":
        items = (
            nodule_datalist.datalist_items(data)
            if isinstance(data, DatalistData)
            else nodule_datalist.dicom_csv_items(data)
        )
        _require(len(items), data)
        samples = nodule_datalist.build_samples(
            items, cfg.preprocess, cache=data.cache_dir, workers=cfg.data_workers
        )
    else:
        assert isinstance(data, DatalistData)  # dicom_csv refused above
        dr_items = fracture_datalist.datalist_items(data)
        _require(len(dr_items), data)
        samples = fracture_datalist.build_samples(
            dr_items, cfg.preprocess, cache=data.cache_dir, workers=cfg.data_workers
        )
    return samples


def _require(n: int, data: DatalistData | DicomCsvData) -> None:
    if n == 0:
        raise ValueError(f"data ({data.kind}) must name at least one image, got none")


def data_manifest(cfg: TrainConfig, config: Path, *, generator: str) -> dict[str, object]:
    """Return the ``training_data`` block of the model card: what was trained on, with hashes.

    Synthetic data keep the block ``triage export`` has always written; real data record the
    datalist / CSV with its SHA-256 (image files are covered by the training cache key, and their
    paths may name patients, so they are not listed).
    """
    data = cfg.data
    if isinstance(data, SyntheticData):
        return {
            "source": "synthetic phantoms only (triage.synth) at the card's voxel size",
            "generator": generator,
            "train_seeds": list(data.train_seeds),
            **({"extra_seeds": [list(r) for r in data.extra_seeds]} if data.extra_seeds else {}),
            "config": str(config),
        }
    if isinstance(data, DatalistData):
        return {
            "source": "detection datalist (MONAI / LUNA16 format)",
            "datalist": data.datalist.name,
            "datalist_sha256": _sha256(data.datalist),
            "section": data.section,
            "config": str(config),
        }
    return {
        "source": "DICOM studies + LUNA16 annotations.csv",
        "annotations_csv": data.annotations_csv.name,
        "annotations_sha256": _sha256(data.annotations_csv),
        "config": str(config),
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
