"""Data-scientist commands: ``triage train | export | evaluate | import-bundle``.

They import ``training`` lazily inside each command, so the serving path (and a serving image
without the 'train' extra) never loads it. ``cli.py`` registers them on the app.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from triage.cli_support import configure_logging, console
from triage.core.errors import ModelUnavailable, TriageError
from triage.inference.card import load_card


def train(
    task: Annotated[str, typer.Argument(help="nodule or fracture (must match the config's task).")],
    config: Annotated[Path, typer.Option(help="Experiment YAML (configs/training/...).")],
    out: Annotated[
        Path, typer.Option(help="Run folder: checkpoint.pt, train_log.jsonl, tb/ (TensorBoard).")
    ],
    resume: Annotated[bool, typer.Option(help="Continue from <out>/checkpoint.pt.")] = False,
) -> None:
    """Train a detector with the MONAI RetinaNet recipe (needs the 'train' extra).

    Data come from the config: synthetic phantoms, a MONAI / LUNA16 datalist, or DICOM studies
    with a LUNA16 annotations.csv; TensorBoard scalars go to the config's log_dir (<out>/tb).
    """
    from training.detection.config import load_config  # noqa: PLC0415 - training code only on demand
    from training.detection.sources import build_samples  # noqa: PLC0415

    configure_logging()
    cfg = load_config(config)
    wanted = {"nodule": "lung_nodule", "fracture": "fracture"}.get(task)
    if wanted != cfg.task:
        console.print(f"[red]TASK must match the config's task ({cfg.task}), got {task}[/]")
        raise typer.Exit(2)
    from training.detection.train import train as run_training  # noqa: PLC0415

    try:
        samples = build_samples(cfg)
    except (OSError, ValueError, TriageError) as e:
        raise _fail(f"training data could not be read: {e}") from e
    log_dir = cfg.log_dir if cfg.log_dir is not None else out / "tb"
    checkpoint = run_training(cfg, samples, out, resume=resume, log_dir=log_dir)
    console.print(f"checkpoint: {checkpoint}", soft_wrap=True)


_TASKS = {"nodule": "lung_nodule", "fracture": "fracture"}


def _fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` in red on stderr (no markup: messages carry ``[...]`` values)."""
    console.print(message, style="red", markup=False, soft_wrap=True)
    return typer.Exit(code)


def export(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint.pt written by `triage train`.")],
    config: Annotated[
        Path, typer.Option(help="The experiment YAML the checkpoint was trained with.")
    ],
    *,
    model_dir: Annotated[Path, typer.Option(help="Model folder: model.onnx + model.yaml go here.")],
    version: Annotated[str, typer.Option(help="Version of this export (card + changelog).")],
    change: Annotated[
        str, typer.Option(help="Changelog line for this version.")
    ] = "exported with triage export",
) -> None:
    """Export a checkpoint to ONNX (parity-checked vs torch) and write or extend its model card."""
    from training.detection.config import load_config  # noqa: PLC0415 - training code only on demand
    from training.detection.export import export_model  # noqa: PLC0415
    from training.detection.ship import INTENDED_USE  # noqa: PLC0415
    from training.detection.sources import REAL_DATA_INTENDED_USE, data_manifest  # noqa: PLC0415
    from triage.synth import ct_phantom, dr_phantom  # noqa: PLC0415

    configure_logging()
    try:
        cfg = load_config(config)
        generator = ct_phantom if cfg.task == "lung_nodule" else dr_phantom
        synthetic = cfg.data.kind == "synthetic"
        card = export_model(
            cfg,
            checkpoint,
            model_dir,
            version=version,
            change=change,
            intended_use=INTENDED_USE.format(real="") if synthetic else REAL_DATA_INTENDED_USE,
            training_data={
                **data_manifest(cfg, config, generator=generator.GENERATOR_VERSION),
                "checkpoint": str(checkpoint),
            },
        )
    except (OSError, ValueError) as e:
        raise _fail(f"export failed: {e}") from e
    console.print(
        f"{card.name} {card.version}: {model_dir / card.weights.file} ({card.weights.sha256[:12]})",
        soft_wrap=True,
    )


def import_bundle(
    path: Annotated[
        Path, typer.Argument(help="A downloaded MONAI lung_nodule_ct_detection bundle folder.")
    ],
    model_dir: Annotated[Path, typer.Option(help="Model folder: model.onnx + model.yaml go here.")],
    *,
    version: Annotated[
        str | None, typer.Option(help="Card version (default: the bundle's version).")
    ] = None,
) -> None:
    """Check a MONAI lung_nodule_ct_detection bundle, export it to ONNX and write its model card.

    Weights are loaded with ``weights_only=True``; the bundle's configs are read as data and
    cross-checked, never executed.
    """
    from training.detection.bundle import import_bundle as run_import  # noqa: PLC0415

    configure_logging()
    try:
        card = run_import(path, model_dir, version=version)
    except (OSError, ValueError) as e:
        raise _fail(f"import-bundle refused {path}: {e}") from e
    console.print(
        f"{card.name} {card.version}: {model_dir / card.weights.file} ({card.weights.source})",
        soft_wrap=True,
    )


def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="Model folder (model.yaml + model.onnx).")],
    task: Annotated[str, typer.Option(help="nodule or fracture (must match the card's task).")],
    *,
    scans: Annotated[int, typer.Option(min=1, help="Fresh synthetic scans to evaluate on.")] = 24,
    first_seed: Annotated[
        int,
        typer.Option(
            min=0,
            help="First phantom seed. The default, 1000000, is the evaluation set the cards "
            "report; compare training phases on a development range no config trains on "
            "(e.g. 900000) so that the evaluation set is not chosen on.",
        ),
    ] = 1_000_000,
    lidc: Annotated[
        bool, typer.Option(help="Also run LIDC-IDRI-0001 from --shared-data (nodule models).")
    ] = True,
    shared_data: Annotated[Path, typer.Option(help="Real sample data folder.")] = Path(
        "../shared/data"
    ),
    out: Annotated[Path, typer.Option(help="JSON report.")] = Path("evaluation.json"),
    png: Annotated[
        Path | None, typer.Option(help="FROC plot PNG (default: the report's path with .png).")
    ] = None,
) -> None:
    """Evaluate a model through the serving path: FROC/CPM on fresh phantoms (+ LIDC-IDRI-0001).

    Fracture models also get AP at IoU 0.1 and 0.3 on the boxes. Synthetic figures describe this
    project's phantoms, not clinical performance.
    """
    from training.common.box_ap import FRACTURE_AP_IOUS  # noqa: PLC0415 - training code on demand
    from training.common.froc import LUNA16_FP_RATES  # noqa: PLC0415
    from training.common.froc_plot import write_froc_png  # noqa: PLC0415
    from training.detection.evaluate import (  # noqa: PLC0415
        evaluate_synthetic,
        trained_seeds_among,
        write_report,
    )

    configure_logging()
    wanted = _TASKS.get(task)
    try:
        card = load_card(model_dir)
    except ModelUnavailable as e:
        raise _fail(str(e)) from e
    if wanted != card.task:
        raise _fail(f"--task must match the card's task ({card.task}), got {task}", 2)
    trained = trained_seeds_among(card.training_data, range(first_seed, first_seed + scans))
    if trained:
        raise _fail(
            f"--first-seed {first_seed} --scans {scans} includes {len(trained)} seeds the card "
            f"says {card.name} was trained on (first {trained[0]}); evaluate on phantoms it has "
            "not seen: pick a range outside training_data.train_seeds / extra_seeds",
            2,
        )
    lidc_paths = _lidc_inputs(shared_data) if lidc and wanted == "lung_nodule" else None
    try:
        result = evaluate_synthetic(
            model_dir,
            n_scans=scans,
            task=wanted,
            first_seed=first_seed,
            ap_ious=FRACTURE_AP_IOUS if wanted == "fracture" else (),
        )
    except (ModelUnavailable, ValueError) as e:
        raise _fail(f"evaluation failed: {e}") from e
    report: dict[str, object] = {
        "model": {"name": card.name, "version": card.version, "sha256": card.weights.sha256},
        "synthetic_fresh_set": result.as_json(),
        "seeds": [first_seed, first_seed + scans],
        "synthetic_note": "phantoms from this project's generator; not clinical",
        "per_scan": result.per_scan,
    }
    if lidc_paths is not None:
        from training.detection.evaluate import evaluate_lidc  # noqa: PLC0415

        report["lidc_idri_0001"] = evaluate_lidc(model_dir, *lidc_paths)
    write_report(out, report)
    plot = write_froc_png(
        png or out.with_suffix(".png"),
        LUNA16_FP_RATES,
        result.sens_at_rates,
        cpm=result.cpm,
        title=f"{card.name} {card.version}: {result.n_scans} synthetic scans",
    )
    sys.stdout.write(
        json.dumps({k: v for k, v in report.items() if k != "per_scan"}, indent=2) + "\n"
    )
    if result.ap_at_iou is not None:
        console.print(_ap_table(result.ap_at_iou, n_scans=result.n_scans))
    console.print(f"report {out}, FROC plot {plot}", soft_wrap=True)


def _ap_table(ap_at_iou: dict[float, float], *, n_scans: int) -> Table:
    """Return the AP-at-IoU figures as a table (fracture evaluation)."""
    table = Table(title="Box AP", caption=f"{n_scans} synthetic radiographs")
    table.add_column("IoU ≥", justify="right")
    table.add_column("AP", justify="right")
    for iou, ap in sorted(ap_at_iou.items()):
        table.add_row(f"{iou:g}", f"{ap:.3f}")
    return table


def _lidc_inputs(shared_data: Path) -> tuple[Path, Path]:
    """Return (series folder, consensus CSV) of LIDC-IDRI-0001, or exit naming the fix."""
    from training.detection.ship import _lidc_paths  # noqa: PLC0415 - one definition of the layout

    found = _lidc_paths(shared_data)
    if found is None:
        raise _fail(
            f"--lidc needs LIDC-IDRI-0001 (series + nodules_consensus.csv) under --shared-data, "
            f"got none in {shared_data}; pass --no-lidc to evaluate on synthetic scans only"
        )
    return found
