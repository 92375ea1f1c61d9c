"""Read detection datalists (MONAI / LUNA16 JSON) and cache the samples rendered from them.

A datalist is ``{"<section>": [{"image": <path>, "box": [[...], ...], "label": [0, ...]}], ...}``
with image paths relative to a base folder (MONAI's ``data_base_dir``). Other top-level keys (our
writer adds ``box_mode`` and ``labels``) and other entry keys (``kind``, ``label_source``) are
ignored, as MONAI's ``load_decathlon_datalist`` ignores them.

Samples are preprocessed once and cached as float16 ``.npz`` under a key that covers the entries,
the image files' sizes and modification times, and the preprocessing spec, so a changed datalist,
image or card never reuses a stale sample.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from training.detection import pool
from training.detection.crops import Sample
from triage.inference.spec import PreprocessSpec

CACHE_FORMAT = 1  # bump when the way samples are made from entries changes


@dataclass(frozen=True)
class DatalistEntry:
    """One image of a datalist section: its resolved path and its boxes as written."""

    image: Path
    boxes: tuple[tuple[float, ...], ...]


def read_section(
    path: Path, *, section: str, base_dir: Path | None, box_values: int
) -> list[DatalistEntry]:
    """Return the entries of one section, image paths resolved against ``base_dir``.

    Args:
        path: the datalist JSON.
        section: e.g. ``"training"`` or ``"validation"``.
        base_dir: folder the image paths are relative to; ``None`` means the JSON's folder.
        box_values: numbers per box: 6 for CT (``cccwhd``), 4 for radiographs (``xyxy``).

    Raises:
        FileNotFoundError: the datalist does not exist.
        ValueError: the section is missing, or an entry lacks an image, has a box with the wrong
            number of values, a label list of another length, or a label other than 0 (the
            detectors here have one class).
    """
    if not path.is_file():
        raise FileNotFoundError(f"datalist must be an existing JSON file, got {str(path)!r}")
    doc = json.loads(path.read_text(encoding="utf-8"))
    sections = sorted(k for k, v in doc.items() if isinstance(v, list))
    if section not in sections:
        raise ValueError(
            f"data.section must be one of the datalist's sections {sections}, got {section!r}"
        )
    root = path.parent if base_dir is None else base_dir
    return [
        _entry(item, n, section=section, root=root, box_values=box_values)
        for n, item in enumerate(doc[section])
    ]


def _entry(item: object, n: int, *, section: str, root: Path, box_values: int) -> DatalistEntry:
    where = f"datalist section {section!r} entry {n}"
    if not isinstance(item, dict) or not isinstance(item.get("image"), str):
        raise ValueError(
            f"{where} must be an object with an 'image' path, got {type(item).__name__}"
        )
    boxes = item.get("box", [])
    labels = item.get("label", [0] * len(boxes))
    if not isinstance(boxes, list) or any(
        not isinstance(b, list) or len(b) != box_values for b in boxes
    ):
        raise ValueError(f"{where}: every box must have {box_values} numbers, got {boxes!r}")
    if not isinstance(labels, list) or len(labels) != len(boxes):
        raise ValueError(f"{where}: 'label' must have one value per box, got {labels!r}")
    if any(int(v) != 0 for v in labels):
        raise ValueError(
            f"{where}: labels must be 0 (the detectors here have one class), got {labels!r}"
        )
    return DatalistEntry(
        image=root / item["image"], boxes=tuple(tuple(float(v) for v in b) for b in boxes)
    )


def cache_key(
    kind: str, sources: Sequence[tuple[Sequence[Path], tuple[object, ...]]], prep: PreprocessSpec
) -> str:
    """Return a short digest of what the samples depend on (for cache file names).

    Args:
        kind: what the samples are, e.g. ``"ct"``; part of the key.
        sources: per sample, its image files or folders and the boxes / other facts that shape it.
        prep: the card's preprocessing spec.
    """
    h = hashlib.sha256(f"{kind}|{CACHE_FORMAT}|{prep.model_dump_json()}".encode())
    for paths, facts in sources:
        h.update(repr(([_stat(p) for p in paths], facts)).encode())
    return h.hexdigest()[:20]


def _stat(path: Path) -> tuple[tuple[str, int, int], ...]:
    """Return (resolved path, size, mtime_ns) of the file, or of every file under the folder."""
    if not path.exists():
        raise FileNotFoundError(f"datalist image must exist, got {str(path)!r}")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    out = []
    for f in files:
        st = os.stat(f)
        out.append((str(f.resolve()), st.st_size, st.st_mtime_ns))
    return tuple(out)


def build_cached(
    make: Callable[[int, PreprocessSpec], Sample],
    key: str,
    n: int,
    prep: PreprocessSpec,
    *,
    cache: Path,
    workers: int,
) -> list[Sample]:
    """Return ``make(i, prep)`` for ``i < n``, rendering missing samples in parallel, caching them.

    ``make`` must be picklable (a module-level function or a ``functools.partial`` of one).
    """
    return pool.build_pool(
        make,
        f"datalist_{key}",
        list(range(n)),
        prep,
        cache=cache,
        generator="datalist (files and boxes are in the key)",
        workers=workers,
    )
