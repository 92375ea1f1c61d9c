"""Prometheus metrics read from the store at scrape time (one custom collector, no counters kept).

Because every number comes from the store, all API processes and workers report the same values
and a restart loses nothing. Labels are closed sets (states, priorities, tasks, model names, reason
classes), never UIDs or free text, so the series count stays small and no patient data leaks.

Metrics:
    triage_studies{state, priority}: studies per job state and displayed priority (queue depth).
    triage_outbox_items{state}: outbox items per delivery state.
    triage_time_to_flag_seconds: histogram of ``flagged_at - last_received_at`` (finished studies).
    triage_inference_seconds{task, model}: histogram of task seconds from the stored results.
    triage_studies_failed{state, reason_class}: FAILED / NOT_ANALYSED studies by reason class.
    triage_models_ready, triage_store_up, triage_spool_disk_used_ratio: gauges.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select
from sqlalchemy.exc import SQLAlchemyError

from triage.api.results import model_for_task, parse_result
from triage.api.worklist import displayed_priority
from triage.store import outbox
from triage.store.db import Store
from triage.store.schema import FINISHED_STATES, JobState, OutboxState, Study
from triage.store.spool import Spool

TIME_TO_FLAG_BUCKETS_S = (5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
INFERENCE_BUCKETS_S = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
FAILED_STATES = (JobState.FAILED.value, JobState.NOT_ANALYSED.value)
_IN_BATCH = 500  # SQLite limits the number of bound parameters of one IN (...)

# First match wins; the reason texts come from the pipeline and the job life cycle.
REASON_CLASSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("interrupted", ("must finish within", "interrupted")),
    ("internal_error", ("internal error",)),
    ("no_qualifying_series", ("no series qualifies",)),
    ("model_unavailable", ("model", "weights", "runtime")),
    ("unreadable_images", ("pixel", "spacing", "slice", "orientation", "decode", "frame")),
)


def reason_class(reason: str) -> str:
    """Return the closed-set class of a failure reason (``other`` when none matches).

    >>> reason_class("not analysed: no series qualifies for lung nodules: the study has no series")
    'no_qualifying_series'
    >>> reason_class("analysis must finish within 3 attempts, got 3: the worker stopped")
    'interrupted'
    """
    text = reason.lower()
    for name, words in REASON_CLASSES:
        if any(w in text for w in words):
            return name
    return "other"


def _buckets(counts: Sequence[int], total: int, bounds: Sequence[float]) -> list[tuple[str, float]]:
    """Return cumulative (le, count) pairs ending with +Inf.

    >>> _buckets([1, 3], 4, (1.0, 5.0))
    [('1', 1.0), ('5', 3.0), ('+Inf', 4.0)]
    """
    pairs = [(f"{b:g}", float(c)) for b, c in zip(bounds, counts, strict=True)]
    return [*pairs, ("+Inf", float(total))]


class StoreCollector(Collector):
    """Collect the engine's metrics from the store on every scrape.

    Inference times need each finished study's result JSON; those are parsed once per analysis
    (cached by study and ``finished_at``) so a scrape reads only results that are new.
    """

    def __init__(self, store: Store, spool: Spool, models_ready: Callable[[], bool]) -> None:
        """Keep what the metrics are read from."""
        self.store = store
        self.spool = spool
        self.models_ready = models_ready
        self._lock = threading.Lock()
        self._tasks: dict[str, tuple[float | None, tuple[tuple[str, str, float], ...]]] = {}

    def describe(self) -> Iterable[Metric]:
        """Return nothing: the registry must not scrape the store at registration."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Yield every metric; a failing store gives ``triage_store_up 0`` and the rest."""
        ready = GaugeMetricFamily("triage_models_ready", "1 when the models are loaded.")
        ready.add_metric([], 1.0 if _safe(self.models_ready) else 0.0)
        yield ready
        try:
            used = 1.0 - self.spool.free_fraction()
        except OSError:  # spool not mounted: the readiness check names it; skip the gauge
            used = None
        if used is not None:
            disk = GaugeMetricFamily("triage_spool_disk_used_ratio", "Used share of spool disk.")
            disk.add_metric([], used)
            yield disk
        up = GaugeMetricFamily("triage_store_up", "1 when the store answered this scrape.")
        try:
            families = [
                self._studies(),
                self._outbox(),
                self._time_to_flag(),
                self._inference(),
                self._failures(),
            ]
        except SQLAlchemyError:
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from families

    def _studies(self) -> Metric:
        family = GaugeMetricFamily(
            "triage_studies",
            "Studies per job state and displayed priority.",
            labels=["state", "priority"],
        )
        prio = displayed_priority()
        with self.store.session() as s:
            rows = s.execute(
                select(Study.state, prio, func.count()).group_by(Study.state, prio)
            ).all()
        for state, priority, n in rows:
            family.add_metric([str(state), str(priority)], float(n))
        return family

    def _outbox(self) -> Metric:
        family = GaugeMetricFamily(
            "triage_outbox_items", "Outbox items per delivery state.", labels=["state"]
        )
        counts = outbox.counts(self.store)
        for state in OutboxState:
            family.add_metric([state.value], float(counts.get(state.value, 0)))
        return family

    def _time_to_flag(self) -> Metric:
        late = Study.flagged_at < Study.last_received_at  # late instances after the flag
        delay = case((late, 0.0), else_=Study.flagged_at - Study.last_received_at)
        columns = [func.sum(case((delay <= b, 1), else_=0)) for b in TIME_TO_FLAG_BUCKETS_S]
        with self.store.session() as s:
            row = s.execute(
                select(func.count(), func.sum(delay), *columns).where(
                    Study.state.in_([st.value for st in FINISHED_STATES]),
                    Study.flagged_at.is_not(None),
                )
            ).one()
        n, total = int(row[0] or 0), float(row[1] or 0.0)
        counts = [int(v or 0) for v in row[2:]]
        return HistogramMetricFamily(
            "triage_time_to_flag_seconds",
            "Seconds from a study's last instance to its priority flag (finished studies).",
            buckets=_buckets(counts, n, TIME_TO_FLAG_BUCKETS_S),
            sum_value=total,
        )

    def _inference(self) -> Metric:
        with self._lock:
            self._refresh_task_times()
            times = [t for _, ts in self._tasks.values() for t in ts]
        family = HistogramMetricFamily(
            "triage_inference_seconds",
            "Seconds per analysis task, by task and model.",
            labels=["task", "model"],
        )
        for (task, model), seconds in sorted(_group(times).items()):
            counts = [sum(1 for v in seconds if v <= b) for b in INFERENCE_BUCKETS_S]
            family.add_metric(
                [task, model], _buckets(counts, len(seconds), INFERENCE_BUCKETS_S), sum(seconds)
            )
        return family

    def _refresh_task_times(self) -> None:
        """Parse the results of analyses not seen yet; forget studies that are gone."""
        with self.store.session() as s:
            finished = s.execute(
                select(Study.study_uid, Study.finished_at).where(
                    Study.finished_at.is_not(None), Study.result_json != ""
                )
            ).all()
            done: dict[str, float | None] = dict(finished)
            stale = [uid for uid, at in done.items() if self._tasks.get(uid, (None,))[0] != at]
            for start in range(0, len(stale), _IN_BATCH):
                rows = s.execute(
                    select(Study.study_uid, Study.finished_at, Study.result_json).where(
                        Study.study_uid.in_(stale[start : start + _IN_BATCH])
                    )
                ).all()
                for uid, at, text in rows:
                    self._tasks[uid] = (at, _task_times(text))
        for uid in set(self._tasks) - done.keys():
            del self._tasks[uid]

    def _failures(self) -> Metric:
        family = GaugeMetricFamily(
            "triage_studies_failed",
            "FAILED or NOT_ANALYSED studies by state and reason class.",
            labels=["state", "reason_class"],
        )
        with self.store.session() as s:
            rows = s.execute(
                select(Study.state, Study.reason).where(Study.state.in_(FAILED_STATES))
            ).all()
        counts: dict[tuple[str, str], int] = {}
        for state, reason in rows:
            key = (str(state), reason_class(reason or ""))
            counts[key] = counts.get(key, 0) + 1
        for (state, cls), n in sorted(counts.items()):
            family.add_metric([state, cls], float(n))
        return family


def _task_times(text: str) -> tuple[tuple[str, str, float], ...]:
    result = parse_result(text)
    tasks = result.get("tasks")
    out: list[tuple[str, str, float]] = []
    for t in tasks if isinstance(tasks, list) else []:
        if not isinstance(t, dict) or t.get("status") != "analysed":
            continue
        seconds, task = t.get("seconds"), str(t.get("task", ""))
        if isinstance(seconds, int | float) and task:
            out.append((task, model_for_task(result, task), float(seconds)))
    return tuple(out)


def _group(times: Iterable[tuple[str, str, float]]) -> dict[tuple[str, str], list[float]]:
    groups: dict[tuple[str, str], list[float]] = {}
    for task, model, seconds in times:
        groups.setdefault((task, model), []).append(seconds)
    return groups


def _safe(check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except Exception:  # noqa: BLE001 - a failing readiness probe means "not ready"
        return False
