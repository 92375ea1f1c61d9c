"""Ground truth files for synthetic studies, in the formats training code already reads.

* ``annotations.csv`` in LUNA16 style: ``seriesuid,coordX,coordY,coordZ,diameter_mm`` with the
  nodule centre in world (patient LPS) millimetres, one row per nodule.
* A MONAI detection datalist, as used by the ``lung_nodule_ct_detection`` bundle (LUNA16 splits):
  ``{"training": [{"image": <path relative to the data root>, "box": [[cx, cy, cz, w, h, d], ...],
  "label": [0, ...]}], "validation": [...]}`` with boxes in world coordinates, ``cccwhd`` mode
  (the bundle converts them with ``ConvertBoxToStandardModed(mode="cccwhd")`` and
  ``AffineBoxToImageCoordinated``). Extra top-level keys document the box mode; MONAI's
  ``load_decathlon_datalist`` reads only the section asked for.
* The radiograph equivalent: the same layout with 2-D pixel boxes in ``xyxy`` mode
  ``[x0, y0, x1, y1]`` (x = column, y = row; x1, y1 exclusive, i.e. the far edges of the last
  pixel), plus ``dr_annotations.csv`` with one row per fracture and one ``kind=none`` row per
  negative image.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

LUNA16_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")
DR_COLUMNS = ("image", "sop_instance_uid", "body_part", "x0", "y0", "x1", "y1", "kind")
NODULE_LABEL = 0
FRACTURE_LABEL = 0


@dataclass(frozen=True, slots=True)
class NoduleRow:
    """One LUNA16-style annotation: a nodule centre in LPS mm and its diameter."""

    seriesuid: str
    coord_x_mm: float
    coord_y_mm: float
    coord_z_mm: float
    diameter_mm: float


@dataclass(frozen=True, slots=True)
class CtDatalistEntry:
    """One CT image in a MONAI detection datalist (boxes: world LPS mm, cccwhd)."""

    image: str
    boxes_cccwhd: tuple[tuple[float, float, float, float, float, float], ...]
    labels: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class DrDatalistEntry:
    """One radiograph in a detection datalist (boxes: pixels, xyxy, max exclusive)."""

    image: str
    boxes_xyxy: tuple[tuple[int, int, int, int], ...]
    labels: tuple[int, ...]
    kinds: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DrAnnotationRow:
    """One row of ``dr_annotations.csv``; a negative image has ``kind="none"`` and no box."""

    image: str
    sop_instance_uid: str
    body_part: str
    box_xyxy: tuple[int, int, int, int] | None
    kind: str


def nodule_box_cccwhd(row: NoduleRow) -> tuple[float, float, float, float, float, float]:
    """Return a nodule's cube box in cccwhd mode: centre, then w = h = d = diameter.

    >>> nodule_box_cccwhd(NoduleRow("1.2", -10.0, 20.0, -30.0, 6.0))
    (-10.0, 20.0, -30.0, 6.0, 6.0, 6.0)
    """
    d = row.diameter_mm
    return (row.coord_x_mm, row.coord_y_mm, row.coord_z_mm, d, d, d)


def write_luna16_csv(rows: Sequence[NoduleRow], path: Path) -> Path:
    """Write LUNA16-style nodule annotations (world LPS mm) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(LUNA16_COLUMNS)
        for r in rows:
            writer.writerow(
                [
                    r.seriesuid,
                    _num(r.coord_x_mm),
                    _num(r.coord_y_mm),
                    _num(r.coord_z_mm),
                    _num(r.diameter_mm),
                ]
            )
    return path


def read_luna16_csv(path: Path) -> list[NoduleRow]:
    """Read LUNA16-style nodule annotations.

    Raises:
        ValueError: when the header is not ``seriesuid,coordX,coordY,coordZ,diameter_mm``.
    """
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != LUNA16_COLUMNS:
            raise ValueError(
                f"LUNA16 csv header must be {','.join(LUNA16_COLUMNS)}, got {reader.fieldnames}"
            )
        return [
            NoduleRow(
                r["seriesuid"],
                float(r["coordX"]),
                float(r["coordY"]),
                float(r["coordZ"]),
                float(r["diameter_mm"]),
            )
            for r in reader
        ]


def _num(x: float) -> str:
    return f"{float(x):.6f}".rstrip("0").rstrip(".") if x == x else "nan"  # noqa: PLR0124 - nan check


def _sections(
    entries: Sequence[CtDatalistEntry | DrDatalistEntry]
    | Mapping[str, Sequence[CtDatalistEntry | DrDatalistEntry]],
) -> Mapping[str, Sequence[CtDatalistEntry | DrDatalistEntry]]:
    return entries if isinstance(entries, Mapping) else {"training": entries}


def write_ct_datalist(
    entries: Sequence[CtDatalistEntry] | Mapping[str, Sequence[CtDatalistEntry]], path: Path
) -> Path:
    """Write a MONAI detection datalist for CT (LUNA16 bundle layout) and return the path.

    Args:
        entries: a list (written as the "training" section) or a mapping section -> list, e.g.
            ``{"training": [...], "validation": [...]}``.
        path: the JSON file; image paths in the entries are relative to the data root.
    """
    doc: dict[str, object] = {
        "box_mode": "cccwhd",
        "box_coordinates": "world, patient LPS millimetres (DICOM frame)",
        "labels": {str(NODULE_LABEL): "nodule"},
    }
    for name, items in _sections(entries).items():
        doc[name] = [
            {
                "image": e.image,
                "box": [list(map(float, b)) for b in e.boxes_cccwhd],
                "label": list(e.labels),
            }
            for e in items
            if isinstance(e, CtDatalistEntry)
        ]
    return _write_json(doc, path)


def write_dr_datalist(
    entries: Sequence[DrDatalistEntry] | Mapping[str, Sequence[DrDatalistEntry]], path: Path
) -> Path:
    """Write a 2-D detection datalist for radiographs (pixel boxes, ``xyxy``); return the path."""
    doc: dict[str, object] = {
        "box_mode": "xyxy",
        "box_coordinates": "pixels: x = column, y = row; x1, y1 exclusive",
        "labels": {str(FRACTURE_LABEL): "fracture"},
    }
    for name, items in _sections(entries).items():
        doc[name] = [
            {
                "image": e.image,
                "box": [list(map(int, b)) for b in e.boxes_xyxy],
                "label": list(e.labels),
                "kind": list(e.kinds),
            }
            for e in items
            if isinstance(e, DrDatalistEntry)
        ]
    return _write_json(doc, path)


def _write_json(doc: Mapping[str, object], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return path


def read_ct_datalist(path: Path) -> dict[str, list[CtDatalistEntry]]:
    """Read the sections of a CT datalist (ours, or MONAI's LUNA16 splits)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    return {
        name: [
            CtDatalistEntry(
                d["image"],
                tuple(tuple(map(float, b)) for b in d["box"]),  # type: ignore[misc]
                tuple(int(x) for x in d["label"]),
            )
            for d in items
        ]
        for name, items in doc.items()
        if isinstance(items, list)
    }


def read_dr_datalist(path: Path) -> dict[str, list[DrDatalistEntry]]:
    """Read the sections of a radiograph datalist written by :func:`write_dr_datalist`."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    return {
        name: [
            DrDatalistEntry(
                d["image"],
                tuple(tuple(map(int, b)) for b in d["box"]),  # type: ignore[misc]
                tuple(int(x) for x in d["label"]),
                tuple(d.get("kind", ())),
            )
            for d in items
        ]
        for name, items in doc.items()
        if isinstance(items, list)
    }


def write_dr_csv(rows: Sequence[DrAnnotationRow], path: Path) -> Path:
    """Write radiograph annotations, one row per fracture and a ``none`` row per negative image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(DR_COLUMNS)
        for r in rows:
            box = [str(v) for v in r.box_xyxy] if r.box_xyxy is not None else ["", "", "", ""]
            writer.writerow([r.image, r.sop_instance_uid, r.body_part, *box, r.kind])
    return path


def read_dr_csv(path: Path) -> list[DrAnnotationRow]:
    """Read radiograph annotations written by :func:`write_dr_csv`."""
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != DR_COLUMNS:
            raise ValueError(
                f"radiograph csv header must be {','.join(DR_COLUMNS)}, got {reader.fieldnames}"
            )
        out = []
        for r in reader:
            box = (
                None if r["x0"] == "" else (int(r["x0"]), int(r["y0"]), int(r["x1"]), int(r["y1"]))
            )
            out.append(
                DrAnnotationRow(r["image"], r["sop_instance_uid"], r["body_part"], box, r["kind"])
            )
        return out
