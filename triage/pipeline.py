"""The steps for one study: select series -> volume/image -> model -> findings -> priority -> SR.

Plain functions over values built by the composition root (``cli.py``): no settings, no files
written here. Every failure of a task becomes a named reason and the study ``NOT_ANALYSED`` — a run
never crashes on one bad study and never reports a silent routine (STYLE H20).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from triage.core.errors import ConfigurationError, ModelUnavailable, TriageError
from triage.core.findings import Finding, FractureFinding, NoduleFinding
from triage.core.priority import (
    TriageDecision,
    TriagePolicy,
    prioritise,
    with_operating_points,
)
from triage.core.study import hash_uid
from triage.dicom.outputs import AlgorithmInfo, build_sr
from triage.dicom.radiograph import load_radiograph
from triage.dicom.reader import SeriesInput, StudyInput, read_headers
from triage.dicom.selection import SeriesRules, SkippedSeries, Task, no_series_reason, select_series
from triage.dicom.series import load_ct_volume
from triage.inference import fracture, lung_nodule
from triage.inference.card import OPERATING_POINT_KEYS, ModelCard
from triage.inference.detector import detect
from triage.inference.rescoring import PatchClassifier, apply_rescoring
from triage.inference.runtime import Runtime, head_function

logger = logging.getLogger(__name__)

MAX_REPORTED_FINDINGS = 10


@dataclass(frozen=True)
class TaskModel:
    """A verified card and the runtime that runs it."""

    card: ModelCard
    runtime: Runtime
    rescorer: PatchClassifier | None = None  # the card's rescoring stage, when it declares one

    @property
    def algorithm(self) -> AlgorithmInfo:
        """Return the identification written into every SR."""
        c = self.card
        return AlgorithmInfo(
            name=c.name,
            version=c.version,
            weights_sha256=c.weights.sha256,
            task=c.task,
            rescoring_sha256=None if c.rescoring is None else c.rescoring.sha256,
        )


@dataclass(frozen=True)
class Engine:
    """What the pipeline needs: models per task (a missing one: a named failure), rules, policy."""

    models: Mapping[Task, TaskModel]
    rules: SeriesRules
    policy: TriagePolicy
    unavailable: Mapping[Task, str] = field(
        default_factory=dict
    )  # task -> why its model is missing
    institution_name: str | None = None  # written into produced SRs


@dataclass(frozen=True)
class TaskOutcome:
    """What one task did on one series (or why it could not)."""

    task: Task
    series_uid: str | None
    findings: tuple[Finding, ...]
    candidates: int
    failure: str | None
    seconds: float
    provider: str = ""
    crashed: bool = False  # a system failure (model crash, out of memory), not the study's fault


@dataclass(frozen=True)
class StudyResult:
    """The outcome for one study: decision, findings, per-task detail, skipped series and the SR."""

    study_uid: str
    decision: TriageDecision
    findings: tuple[Finding, ...]
    outcomes: tuple[TaskOutcome, ...]
    skipped_series: tuple[SkippedSeries, ...]
    sr: Dataset | None
    algorithms: tuple[AlgorithmInfo, ...]
    seconds: float


class ResultSink(Protocol):
    """Where results go (a folder, a PACS, the store); adapters implement it, the CLI injects it."""

    def publish(self, result: StudyResult) -> None:
        """Deliver one study's result."""
        ...


def effective_policy(engine: Engine) -> TriagePolicy:
    """Return the engine's policy with "operating point" thresholds taken from the loaded cards."""
    points = {
        task: (m.card.operating_point_score if (m := engine.models.get(task)) else None)
        for task in Task
    }
    return with_operating_points(
        engine.policy, lung_nodule=points[Task.LUNG_NODULE], fracture=points[Task.FRACTURE]
    )


def task_min_score(task: Task, engine: Engine) -> float:
    """Return the score a finding of ``task`` must reach to be reported and to count for priority.

    Raises:
        ConfigurationError: the policy asks for the model's operating point and its card records
            none (an imported bundle, a hand-written card): the message says what to set.
    """
    policy = effective_policy(engine)
    score = policy.lung_nodule.min_score if task == Task.LUNG_NODULE else policy.fracture.min_score
    if score is None:
        name = m.card.name if (m := engine.models.get(task)) else task.value
        raise ConfigurationError(
            f"policy {task.value}.min_score is 'operating_point', but model {name!r} records no "
            f"operating point (metrics.{'.'.join(OPERATING_POINT_KEYS)} in its model.yaml); "
            "set min_score to a number in the policy file"
        )
    return score


def _relevant_tasks(study: StudyInput, rules: SeriesRules) -> list[Task]:
    """Tasks whose modality appears in the study: only those can fail for lack of a series."""
    modalities = {s.modality for s in study.series}
    return [t for t, rule in rules.tasks.items() if modalities & set(rule.modalities)]


def _run_lung(
    series: SeriesInput, model: TaskModel, min_score: float
) -> tuple[list[NoduleFinding], int, npt.NDArray[np.float64]]:
    volume = load_ct_volume(series)
    prepared = lung_nodule.preprocess(volume, model.card.preprocess)
    dets = detect(prepared.image, head_function(model.runtime, model.card), model.card.detection)
    dets = lung_nodule.apply_card_filters(dets, volume, prepared, model.card.detection)
    dets = apply_rescoring(prepared.image, dets, model.card, model.rescorer)
    candidates = lung_nodule.to_findings(dets, prepared, volume, series_uid=series.series_uid)
    kept = [f for f in candidates if f.score >= min_score]
    return kept[:MAX_REPORTED_FINDINGS], len(candidates), volume.affine_lps


def _run_fracture(
    series: SeriesInput, model: TaskModel, min_score: float
) -> tuple[list[FractureFinding], int]:
    findings: list[FractureFinding] = []
    candidates = 0
    for path in series.paths:
        radiograph = load_radiograph(path, series=series)
        prepared = fracture.preprocess(radiograph, model.card.preprocess)
        dets = detect(
            prepared.image, head_function(model.runtime, model.card), model.card.detection
        )
        dets = apply_rescoring(prepared.image, dets, model.card, model.rescorer)
        found = fracture.to_findings(dets, prepared, radiograph)
        candidates += len(found)
        findings += [f for f in found if f.score >= min_score]
    findings.sort(key=lambda f: -f.score)
    return findings[:MAX_REPORTED_FINDINGS], candidates


def _run_task(
    task: Task, series: SeriesInput, engine: Engine, affines: list[npt.NDArray[np.float64]]
) -> TaskOutcome:
    start = time.perf_counter()
    model = engine.models.get(task)
    try:
        if model is None:
            raise ModelUnavailable(
                engine.unavailable.get(task, f"no model is installed for {task.value}")
            )
        min_score = task_min_score(task, engine)
        if task == Task.LUNG_NODULE:
            found, n, affine = _run_lung(series, model, min_score)
            affines.append(affine)
        else:
            found_f, n = _run_fracture(series, model, min_score)
            found = list(found_f)  # type: ignore[arg-type]
        return TaskOutcome(
            task,
            series.series_uid,
            tuple(found),
            n,
            None,
            time.perf_counter() - start,
            model.runtime.provider,
        )
    except TriageError as e:
        reason = str(e)
    except Exception as e:  # a crash in one task must not take down the run (H20)
        logger.exception(
            "task failed", extra={"task": task.value, "series": hash_uid(series.series_uid)}
        )
        reason = f"internal error in {task.value}: {type(e).__name__}"
        return TaskOutcome(
            task, series.series_uid, (), 0, reason, time.perf_counter() - start, crashed=True
        )
    return TaskOutcome(task, series.series_uid, (), 0, reason, time.perf_counter() - start)


def analyse_study(
    study: StudyInput, engine: Engine, *, now: datetime, previous_sr: Dataset | None = None
) -> StudyResult:
    """Run every relevant task on the study's chosen series and build the decision and the SR.

    ``previous_sr`` is the report an earlier analysis of this study produced; a new report with
    different content names it in its Predecessor Documents Sequence, so viewers show one report.
    """
    start = time.perf_counter()
    selection = select_series(study, engine.rules)
    outcomes: list[TaskOutcome] = []
    affines: list[npt.NDArray[np.float64]] = []
    sources: list[Path] = []
    relevant = _relevant_tasks(study, engine.rules)
    for task in relevant:
        chosen = selection.chosen.get(task, ())
        if not chosen:
            outcomes.append(TaskOutcome(task, None, (), 0, no_series_reason(selection, task), 0.0))
            continue
        for series in chosen:
            outcomes.append(_run_task(task, series, engine, affines))
            sources += list(series.paths)
    failures = [o.failure for o in outcomes if o.failure]
    if not relevant:
        modalities = sorted({s.modality or "absent" for s in study.series})
        failures.append(
            f"no series qualifies for any triage task: modalities {', '.join(modalities)}"
        )
    findings = tuple(f for o in outcomes for f in o.findings)
    decision = prioritise(findings, effective_policy(engine), failures=failures)
    algorithms = tuple(engine.models[t].algorithm for t in relevant if t in engine.models)
    sr = _build_report(
        study,
        findings,
        decision=decision,
        sources=sources,
        algorithms=algorithms,
        affines=affines,
        now=now,
        institution_name=engine.institution_name,
        previous_sr=previous_sr,
    )
    return StudyResult(
        study.study_uid,
        decision,
        findings,
        tuple(outcomes),
        selection.skipped,
        sr,
        algorithms,
        time.perf_counter() - start,
    )


def _build_report(
    study: StudyInput,
    findings: tuple[Finding, ...],
    *,
    decision: TriageDecision,
    sources: list[Path],
    algorithms: tuple[AlgorithmInfo, ...],
    affines: list[npt.NDArray[np.float64]],
    now: datetime,
    institution_name: str | None = None,
    previous_sr: Dataset | None = None,
) -> Dataset | None:
    """Return the SR, or None when no model is installed (nothing to name as its author)."""
    if not algorithms:
        return None
    paths = sources or [s.paths[0] for s in study.series if s.paths]
    if not paths:
        return None
    try:
        return build_sr(
            findings=findings,
            decision=decision,
            source_datasets=read_headers(paths),
            algorithms=algorithms,
            now=now,
            affine_lps=affines[0] if affines else None,
            institution_name=institution_name,
            previous_sr=previous_sr,
        )
    except (ValueError, TriageError):
        logger.exception("SR could not be built", extra={"study": hash_uid(study.study_uid)})
        return None


def analyse_all(
    studies: Sequence[StudyInput],
    engine: Engine,
    sink: ResultSink,
    *,
    now: datetime,
    on_done: Callable[[StudyResult], None] | None = None,
) -> list[StudyResult]:
    """Analyse each study in turn and publish it; returns the results in input order."""
    results = []
    for study in studies:
        result = analyse_study(study, engine, now=now)
        sink.publish(result)
        results.append(result)
        if on_done is not None:
            on_done(result)
    return results
