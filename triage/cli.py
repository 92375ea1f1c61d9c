"""Composition root and entry points: ``triage run|demo|synth|models verify|train|evaluate``.

Builds Settings -> runtimes -> Engine -> sinks and calls the pipeline. Exit codes: 0 when every
study got an outcome (NOT_ANALYSED included — "not analysable" is an answer, not an error), 2 for
usage errors (typer's), 1 for system errors (unreadable input, no writable output). The training
commands (``train``, ``evaluate``, ``export``, ``import-bundle``) import ``training`` lazily, inside
the command, so serving never loads it.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from triage import cli_dataset, cli_service, cli_training
from triage.adapters.folder import FolderSink
from triage.cli_support import configure_logging, console
from triage.config import Settings, load_policy
from triage.core.errors import ModelUnavailable
from triage.core.priority import Priority, rank
from triage.dicom.reader import scan_folder
from triage.dicom.selection import Task, load_series_rules
from triage.inference.card import load_card
from triage.inference.runtime import RuntimeOptions, make_patch_classifier, make_runtime
from triage.pipeline import Engine, StudyResult, TaskModel, analyse_all
from triage.reporting import summary_json

app = typer.Typer(
    help="AI triage of chest CT and radiographs. Not for diagnostic use.", no_args_is_help=True
)
models_app = typer.Typer(help="Inspect and verify installed models.", no_args_is_help=True)
app.add_typer(models_app, name="models")
synth_app = typer.Typer(
    help="Generate synthetic DICOM studies with ground truth (for training and tests).",
    no_args_is_help=True,
)
app.add_typer(synth_app, name="synth")
logger = logging.getLogger("triage")

_COLOURS = {
    Priority.STAT: "bold red",
    Priority.URGENT: "bold yellow",
    Priority.NOT_ANALYSED: "magenta",
    Priority.ROUTINE: "green",
}


def build_engine(settings: Settings, *, policy_file: Path | None = None) -> Engine:
    """Load rules, policy and every model folder in ``settings.models_dir`` (sha256-verified)."""
    models: dict[Task, TaskModel] = {}
    unavailable: dict[Task, str] = {}
    opts = RuntimeOptions(
        device=settings.device, threads=settings.threads, triton_url=settings.triton_url
    )
    for task in Task:
        folder = _model_folder(settings.models_dir, task)
        if folder is None:
            unavailable[task] = f"no model for {task.value} in {settings.models_dir}"
            continue
        try:
            card = load_card(folder)
            models[task] = TaskModel(
                card,
                make_runtime(settings.runtime, card, folder, opts),
                make_patch_classifier(card, folder, opts),
            )
        except ModelUnavailable as e:
            unavailable[task] = str(e)
            logger.warning("model unavailable: %s", e)
    return Engine(
        models=models,
        rules=load_series_rules(settings.series_rules_file),
        policy=load_policy(policy_file or settings.policy_file),
        unavailable=unavailable,
        institution_name=settings.institution_name,
    )


def _model_folder(models_dir: Path, task: Task) -> Path | None:
    if not models_dir.is_dir():
        return None
    for card_path in sorted(models_dir.glob("*/model.yaml")):
        try:
            if load_card(card_path.parent).task == task.value:
                return card_path.parent
        except ModelUnavailable:
            continue
    return None


def render_table(results: list[StudyResult], out_dir: Path) -> Table:
    """Return the prioritised result table: most urgent first, then longest running."""
    table = Table(title=f"Triage results (SRs and summaries under {out_dir})")
    for col in ("priority", "study", "findings", "reasons", "SR"):
        table.add_column(col)
    for r in sorted(results, key=lambda r: -rank(r.decision.priority)):
        p = r.decision.priority
        table.add_row(
            f"[{_COLOURS[p]}]{p.value.upper()}[/]",
            r.study_uid[-16:],
            str(len(r.findings)),
            "\n".join(r.decision.reasons)[:400],
            "yes" if r.sr is not None else "no",
        )
    return table


def run_path(
    path: Path, *, out_dir: Path, settings: Settings, policy_file: Path | None, as_json: bool
) -> list[StudyResult]:
    """Scan, analyse and publish every study under ``path``; print the table (or JSON)."""
    scan = scan_folder(path)
    for skipped in scan.skipped:
        console.print(f"[dim]skipped file {skipped.path}: {skipped.reason}[/]")
    engine = build_engine(settings, policy_file=policy_file)
    sink = FolderSink(out_dir)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=as_json or len(scan.studies) < 2,
    ) as progress:
        bar = progress.add_task("analysing studies", total=len(scan.studies))
        results = analyse_all(
            scan.studies,
            engine,
            sink,
            now=datetime.now(UTC),
            on_done=lambda _r: progress.advance(bar),
        )
    if as_json:
        payload = [summary_json(r, sink.written[r.study_uid][0]) for r in results]
        sys.stdout.write(
            json.dumps(
                {
                    "studies": payload,
                    "skipped_files": [
                        {"path": str(s.path), "reason": s.reason} for s in scan.skipped
                    ],
                },
                indent=2,
            )
            + "\n"
        )
    else:
        Console().print(render_table(results, out_dir))
    return results


@app.command()
def run(
    path: Annotated[
        Path,
        typer.Argument(
            help="A DICOM folder (any nesting; non-DICOM files are skipped and listed)."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Where SRs and JSON summaries go.")] = Path(
        "triage-out"
    ),
    *,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summaries as JSON on stdout.")
    ] = False,
    runtime: Annotated[
        str, typer.Option(help="onnx (default, no torch), torch, or triton (TRIAGE_TRITON_URL).")
    ] = "onnx",
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    policy: Annotated[
        Path | None, typer.Option(help="Thresholds file (configs/policy.yaml schema).")
    ] = None,
    models_dir: Annotated[
        Path | None, typer.Option(help="Folder of model folders (model.yaml + weights).")
    ] = None,
) -> None:
    """Analyse every study under PATH and write a TID 1500 SR + JSON summary per study."""
    configure_logging()
    if not path.exists():
        console.print(f"[red]PATH must exist, got {path}[/]")
        raise typer.Exit(1)
    overrides: dict[str, object] = {"runtime": runtime, "device": device}
    if models_dir is not None:
        overrides["models_dir"] = models_dir
    settings = Settings(**overrides)  # type: ignore[arg-type]
    out.mkdir(parents=True, exist_ok=True)
    run_path(path, out_dir=out, settings=settings, policy_file=policy, as_json=as_json)


def sample_studies(shared_data: Path) -> list[Path]:
    """Return the real sample study folders that exist under ``shared_data`` (LIDC first)."""
    found: list[Path] = []
    for candidate in (
        shared_data / "lidc-idri-0001" / "series",
        shared_data / "lidc-idri-0001",
        shared_data / "series",
        shared_data / "non-chest-ct-totalseg",
        shared_data / "nema-wg04-cr",
    ):
        if (
            candidate.is_dir()
            and any(candidate.iterdir())
            and not any(f in candidate.parents for f in found)
        ):
            if candidate.name == "lidc-idri-0001" and (candidate / "series").is_dir():
                continue
            found.append(candidate)
    return found


@app.command()
def demo(
    *,
    out: Annotated[Path, typer.Option(help="Where inputs and results of the demo go.")] = Path(
        "demo-out"
    ),
    shared_data: Annotated[Path, typer.Option(help="Real sample data (used when present).")] = Path(
        "../shared/data"
    ),
    n_ct: Annotated[int, typer.Option(help="Synthetic CT studies to generate.")] = 2,
    n_dr: Annotated[int, typer.Option(help="Synthetic radiographs to generate.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic studies.")] = 2026,
    keep_running: Annotated[
        bool, typer.Option(help="Leave the service running for the web page.")
    ] = False,
    timeout_s: Annotated[float, typer.Option(help="Longest wait for the results.")] = 900.0,
) -> None:
    """Start the service, send synthetic + real sample studies over DICOM, print the worklist."""
    from triage.cli_demo import run_service_demo  # noqa: PLC0415 - only the demo needs it
    from triage.synth.studies import make_demo_set  # noqa: PLC0415 - only the demo needs the generator

    configure_logging()
    inputs = out / "input"
    shutil.rmtree(inputs, ignore_errors=True)
    console.print(
        f"generating {n_ct} synthetic CT and {n_dr} synthetic radiograph studies in {inputs} …"
    )
    make_demo_set(inputs / "synthetic", seed=seed, n_ct=n_ct, n_dr=n_dr)
    real = sample_studies(shared_data)
    for folder in real:
        shutil.copytree(folder, inputs / "real" / folder.name, dirs_exist_ok=True)
    if not real:
        console.print(f"[yellow]no real sample data under {shared_data}: synthetic studies only[/]")
    unfinished = run_service_demo(
        inputs, out / "service", keep_running=keep_running, timeout_s=timeout_s
    )
    if unfinished:
        console.print(f"[red]{unfinished} studies did not finish in {timeout_s:.0f} s[/]")
        raise typer.Exit(1)


def _synth(out: Path, *, seed: int, n_ct: int, n_dr: int) -> None:
    from triage.synth.studies import make_demo_set  # noqa: PLC0415 - generator only when asked

    made = make_demo_set(out, seed=seed, n_ct=n_ct, n_dr=n_dr)
    n = len(made.ct_studies) + len(made.dr_studies)
    truth = made.annotations_csv if n_ct else made.dr_annotations_csv
    datalist = made.datalist_json if n_ct else made.dr_datalist_json
    console.print(f"{n} studies in {out}; ground truth {truth}, MONAI datalist {datalist}")


@synth_app.command("ct")
def synth_ct(
    out: Annotated[Path, typer.Argument(help="Output folder.")],
    count: Annotated[int, typer.Option(help="Number of CT studies.")] = 3,
    seed: Annotated[
        int, typer.Option(help="Seed; the same seed gives the same studies and UIDs.")
    ] = 0,
) -> None:
    """Synthetic chest CT studies (nodules 3-30 mm), LUNA16-style annotations.csv, datalist.json."""
    _synth(out, seed=seed, n_ct=count, n_dr=0)


@synth_app.command("dr")
def synth_dr(
    out: Annotated[Path, typer.Argument(help="Output folder.")],
    count: Annotated[
        int, typer.Option(help="Number of radiographs (chest and limb alternate).")
    ] = 4,
    seed: Annotated[
        int, typer.Option(help="Seed; the same seed gives the same studies and UIDs.")
    ] = 0,
) -> None:
    """Synthetic chest/limb radiographs with fractures + dr_annotations.csv + dr_datalist.json."""
    _synth(out, seed=seed, n_ct=0, n_dr=count)


app.command()(cli_service.serve)
app.command()(cli_service.token)
app.command()(cli_service.pull)
app.command()(cli_training.train)
app.command()(cli_training.export)
app.command("import-bundle")(cli_training.import_bundle)
app.command()(cli_training.evaluate)
app.add_typer(cli_dataset.app, name="dataset")


@models_app.command("verify")
def models_verify(
    models_dir: Annotated[Path | None, typer.Option(help="Folder of model folders.")] = None,
) -> None:
    """Check every model card, its weights' sha256 and that the runtime loads it."""
    configure_logging()
    settings = Settings(**({"models_dir": models_dir} if models_dir else {}))  # type: ignore[arg-type]
    table = Table(title=f"Models in {settings.models_dir}")
    for col in ("model", "version", "task", "sha256", "runtime", "status"):
        table.add_column(col)
    failed = False
    for card_path in sorted(settings.models_dir.glob("*/model.yaml")):
        try:
            card = load_card(card_path.parent)
            opts = RuntimeOptions(device=settings.device, triton_url=settings.triton_url)
            rt = make_runtime(settings.runtime, card, card_path.parent, opts)
            rescorer = make_patch_classifier(card, card_path.parent, opts)
            table.add_row(
                card.name,
                card.version,
                card.task,
                card.weights.sha256[:12],
                rt.provider + (" + rescoring (onnx)" if rescorer is not None else ""),
                "[green]ok[/]",
            )
        except ModelUnavailable as e:
            failed = True
            table.add_row(card_path.parent.name, "?", "?", "?", settings.runtime, f"[red]{e}[/]")
    Console().print(table)
    if failed:
        raise typer.Exit(1)


def main() -> None:  # pragma: no cover - console script entry
    """Entry point for ``python -m triage.cli``."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
