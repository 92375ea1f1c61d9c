"""``triage dataset export``: reviewed studies from the service store -> de-identified datalists.

A study is exported when the service analysed it (state done) and a radiologist acknowledged its
result or overrode its priority. Only the series the models analysed are copied, each instance
de-identified (DICOM PS3.15 Basic Profile, :mod:`triage.dicom.deidentify`) with pseudonyms keyed
by a secret seed, so the same study gets the same pseudonyms in every export. Two datalists in the
format ``triage train`` reads (and ``triage synth`` writes) go next to the images:

* ``datalist.json``: CT series folders, nodule boxes ``cccwhd`` in world (patient LPS) mm;
* ``dr_datalist.json``: radiograph files, fracture boxes ``xyxy`` in source pixels.

Boxes are the AI's findings as the radiologist reviewed them; each entry says where its label came
from (``ai_acknowledged`` or ``radiologist_override``) and the priority the radiologist gave. The
re-identification key (secret seed + original <-> pseudonymised StudyInstanceUID) stays local:
it is written with mode 600 and never inside ``--out``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer
from pydicom import dcmread
from sqlalchemy import or_, select

from triage.cli_support import configure_logging, console
from triage.config import Settings
from triage.core.study import hash_uid
from triage.dicom.deidentify import BurnedInAnnotation, Deidentifier
from triage.store.db import Store, migrate
from triage.store.ingest import NON_IMAGE_MODALITIES
from triage.store.schema import Instance, JobState, Study
from triage.store.spool import Spool, write_durably

logger = logging.getLogger(__name__)

app = typer.Typer(help="Training data from the service store.", no_args_is_help=True)

KEY_FORMAT = "triage-reid-key/1"
AI_ACKNOWLEDGED = "ai_acknowledged"
RADIOLOGIST_OVERRIDE = "radiologist_override"


class ExportRefused(Exception):
    """The export cannot run as asked; the message says why and how to fix it."""


@dataclass
class ReidKey:
    """The local re-identification key: the secret seed and original -> pseudonymised study UIDs."""

    seed: str
    studies: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load_or_create(cls, path: Path) -> ReidKey:
        """Read the key at ``path``, or make a new secret seed when there is none yet.

        Raises:
            ExportRefused: the file is readable by others than its owner, or is not a key file.
        """
        if not path.exists():
            return cls(seed=secrets.token_hex(32))
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise ExportRefused(
                f"the key file must be private to its owner (mode 600), got {mode:o}; "
                f"run chmod 600 {path}"
            )
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("format") != KEY_FORMAT or not isinstance(doc.get("seed"), str):
            raise ExportRefused(f"the key file must be a {KEY_FORMAT} file, got another file")
        return cls(seed=doc["seed"], studies=dict(doc.get("studies", {})))

    def save(self, path: Path) -> None:
        """Write the key with mode 600 (created private, then moved into place)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        payload = {"format": KEY_FORMAT, "seed": self.seed, "studies": self.studies}
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)


@dataclass
class ExportSummary:
    """What an export wrote (counts only: nothing here identifies a patient)."""

    studies: int = 0
    instances: int = 0
    ct_entries: list[dict[str, object]] = field(default_factory=list)
    dr_entries: list[dict[str, object]] = field(default_factory=list)
    skipped_instances: int = 0


def _label(study: Study, result: dict[str, object]) -> tuple[str, str]:
    """Return (label source, priority the radiologist gave)."""
    if study.override_priority:
        return RADIOLOGIST_OVERRIDE, study.override_priority
    return AI_ACKNOWLEDGED, str(result.get("priority") or study.ai_priority or "")


def _h(uid: str) -> str:
    return hashlib.sha256(uid.encode("ascii", "replace")).hexdigest()[:16]


def _copy_instance(
    spool: Spool, row: Instance, out: Path, deid: Deidentifier
) -> tuple[str, str] | None:
    """De-identify one spooled instance into ``out``; return (series folder, file), relative."""
    ds = dcmread(spool.root / row.path)
    try:
        deid.deidentify(ds)
    except BurnedInAnnotation:
        return None
    folder = f"images/{_h(str(ds.StudyInstanceUID))}/{_h(str(ds.SeriesInstanceUID))}"
    name = f"{folder}/{_h(str(ds.SOPInstanceUID))}.dcm"
    (out / folder).mkdir(parents=True, exist_ok=True)
    tmp = out / f"{name}.partial"
    ds.save_as(tmp, enforce_file_format=True)
    tmp.replace(out / name)
    return folder, name


def _export_study(
    study: Study, rows: list[Instance], *, spool: Spool, out: Path, deid: Deidentifier
) -> ExportSummary:
    """Copy the analysed series of one study and return its datalist entries."""
    result = json.loads(study.result_json or "{}")
    source, priority = _label(study, result)
    common = {
        "label_source": source,
        "priority": priority,
        "study": deid.pseudonym_uid(study.study_uid),
    }
    findings = [f for f in result.get("findings", []) if isinstance(f, dict)]
    done = ExportSummary(studies=1)
    for task in result.get("tasks", []):
        if task.get("status") != "analysed":
            continue
        series_rows = [r for r in rows if r.series_uid == task.get("series_uid")]
        copied = {r.sop_uid: _copy_instance(spool, r, out, deid) for r in series_rows}
        done.skipped_instances += sum(v is None for v in copied.values())
        kept = {sop: v for sop, v in copied.items() if v is not None}
        done.instances += len(kept)
        if not kept:
            continue
        if task.get("task") == "lung_nodule":
            boxes = [
                [*f["center_lps_mm"], f["diameter_mm"], f["diameter_mm"], f["diameter_mm"]]
                for f in findings
                if f.get("type") == "nodule" and f.get("series_uid") == task.get("series_uid")
            ]
            folder = next(iter(kept.values()))[0]
            done.ct_entries.append(
                {"image": folder, "box": boxes, "label": [0] * len(boxes), **common}
            )
            continue
        for sop, (_, name) in sorted(kept.items(), key=lambda kv: kv[1][1]):
            boxes = [
                [*f["box_col_row_px"]["min"], *f["box_col_row_px"]["max"]]
                for f in findings
                if f.get("type") == "fracture" and f.get("sop_instance_uid") == sop
            ]
            done.dr_entries.append(
                {"image": name, "box": boxes, "label": [0] * len(boxes), **common}
            )
    return done


def export_dataset(
    store: Store, spool: Spool, out: Path, *, key: ReidKey, since: float | None
) -> ExportSummary:
    """Export every reviewed, analysed study (finished at or after ``since``) into ``out``."""
    deid = Deidentifier(key.seed)
    total = ExportSummary()
    query = select(Study).where(
        Study.state == JobState.DONE.value,
        or_(Study.acknowledged_at.is_not(None), Study.override_priority.is_not(None)),
    )
    if since is not None:
        query = query.where(Study.finished_at >= since)
    with store.session() as s:
        studies = list(s.scalars(query.order_by(Study.study_uid)))
    for study in studies:
        with store.session() as s:
            rows = list(
                s.scalars(
                    select(Instance).where(
                        Instance.study_uid == study.study_uid,
                        Instance.modality.not_in(sorted(NON_IMAGE_MODALITIES)),
                    )
                )
            )
        one = _export_study(study, rows, spool=spool, out=out, deid=deid)
        key.studies[study.study_uid] = deid.pseudonym_uid(study.study_uid)
        total.studies += 1
        total.instances += one.instances
        total.skipped_instances += one.skipped_instances
        total.ct_entries += one.ct_entries
        total.dr_entries += one.dr_entries
        logger.info("study exported", extra={"study": hash_uid(study.study_uid)})
    return total


def write_datalists(summary: ExportSummary, out: Path, *, now: float) -> tuple[Path, Path]:
    """Write ``datalist.json`` (CT) and ``dr_datalist.json`` (radiographs) into ``out``."""
    exported = datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")
    provenance = {
        "source": "triage dataset export: studies reviewed by radiologists in the triage service",
        "deidentification": "DICOM PS3.15 Basic Profile (dicognito + private/free-text removal)",
        "exported_at": exported,
    }
    ct = {
        "box_mode": "cccwhd",
        "box_coordinates": "world, patient LPS millimetres (DICOM frame)",
        "labels": {"0": "nodule"},
        **provenance,
        "training": summary.ct_entries,
    }
    dr = {
        "box_mode": "xyxy",
        "box_coordinates": "pixels: x = column, y = row; x1, y1 exclusive",
        "labels": {"0": "fracture"},
        **provenance,
        "training": summary.dr_entries,
    }
    paths = (out / "datalist.json", out / "dr_datalist.json")
    for path, doc in zip(paths, (ct, dr), strict=True):
        write_durably(path, (json.dumps(doc, indent=1) + "\n").encode("utf-8"))
    return paths


def _since_timestamp(since: str | None) -> float | None:
    if since is None:
        return None
    try:
        day = date.fromisoformat(since)
    except ValueError:
        raise ExportRefused(f"--since must be a date YYYY-MM-DD, got {since!r}") from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def _check_key_outside(key_file: Path, out: Path) -> None:
    if key_file.resolve().is_relative_to(out.resolve()):
        raise ExportRefused(
            f"--key-file must be outside --out (the key re-identifies the export), got {key_file} "
            f"inside {out}; keep the key in the service's data folder (the default)"
        )


@app.command("export")
def export(
    out: Annotated[
        Path, typer.Option(help="Export folder: images/, datalist.json, dr_datalist.json.")
    ],
    since: Annotated[
        str | None,
        typer.Option(help="Only studies analysed on or after this UTC date, YYYY-MM-DD."),
    ] = None,
    key_file: Annotated[
        Path | None,
        typer.Option(
            help="Re-identification key, mode 600, never inside --out "
            "(default: <data dir>/reid-key.json)."
        ),
    ] = None,
) -> None:
    """Export reviewed studies as a de-identified training datalist (DICOM PS3.15 Basic Profile)."""
    configure_logging()
    settings = Settings()
    key_path = key_file if key_file is not None else settings.data_dir / "reid-key.json"
    try:
        _check_key_outside(key_path, out)
        since_ts = _since_timestamp(since)
        key = ReidKey.load_or_create(key_path)
    except ExportRefused as e:
        console.print(str(e), style="red", markup=False, soft_wrap=True)
        raise typer.Exit(2) from e
    key.save(key_path)  # the seed is kept before any pseudonym is written with it
    store = Store(settings.store_url())
    try:
        migrate(store.engine)
        out.mkdir(parents=True, exist_ok=True)
        summary = export_dataset(
            store, Spool(settings.data_dir / "spool"), out, key=key, since=since_ts
        )
        key.save(key_path)
        ct, dr = write_datalists(summary, out, now=time.time())
    finally:
        store.close()
    console.print(
        f"{summary.studies} studies, {summary.instances} instances de-identified into {out} "
        f"({len(summary.ct_entries)} CT series in {ct.name}, {len(summary.dr_entries)} radiographs "
        f"in {dr.name}); {summary.skipped_instances} instances skipped (burned-in annotation); "
        f"re-identification key: {key_path}",
        soft_wrap=True,
    )
