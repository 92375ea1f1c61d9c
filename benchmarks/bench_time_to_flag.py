"""Time to flag under a backlog: a STAT study sent last must jump the routine queue (issue #4).

    nice -n 5 .venv/bin/python -m benchmarks.bench_time_to_flag --n-routine 200

Generates ``--n-routine`` routine synthetic radiograph studies and one more whose header says
``RequestedProcedurePriority = STAT`` (``triage.synth.studies.make_dr_study``; cached under
``--studies-dir``, so a second run skips the rendering), starts a real engine (``triage serve``,
shipped models, ``--workers`` analysis processes, every other setting at its default), sends all
routine studies with dcmtk ``storescu`` in one association and then the STAT study in a second
one, and waits until every study is finished. It then reads the engine's store read-only
(``<data>/triage.db``, table ``studies``).

time-to-flag = ``flagged_at - last_received_at`` per study: the time from the study's last
instance being stored to its priority being on the worklist (the quiet period, the wait in the
queue and the analysis all count). Reported: p50/p95/max for the STAT study and the routine ones,
how many routine studies were flagged after the STAT one, where the STAT study was analysed in
the order of analysis, the analysis throughput and the time to drain the backlog.

The engine binds only 127.0.0.1, so no network namespace is needed. Nothing here asserts on
timing; the figures are printed and written to ``benchmarks/results/time_to_flag.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from benchmarks._common import write_result
from tests.service_process import ServiceProcess
from triage.synth.studies import make_dr_study, study_folder_name
from triage.synth.study_meta import SyntheticStudyMeta

CALLING_AE = "STORESCU"
FINISHED = ("done", "not_analysed", "failed")
STAT_SEED_OFFSET = 1_000_000  # the STAT study's seed never collides with a routine one
COLUMNS = (
    "study_uid, uid_hash, state, order_priority, ai_priority, effective_priority, attempts, "
    "n_instances, first_received_at, last_received_at, completed_at, started_at, finished_at, "
    "flagged_at"
)


def _study_file(root: Path, seed: int) -> Path | None:
    folder = root / study_folder_name(
        SyntheticStudyMeta.from_seed(seed, kind="dr").study_instance_uid
    )
    files = sorted(folder.glob("*.dcm")) if folder.is_dir() else []
    return files[0] if files else None


def _render(job: tuple[Path, int, bool]) -> Path:
    """Render one radiograph study (if not cached) and return its file; STAT sets the header."""
    root, seed, stat = job
    path = _study_file(root, seed)
    if path is None:
        kind = "chest" if seed % 2 == 0 else "limb"
        path = make_dr_study(root, seed, kind=kind).files[0]
    if stat:
        ds = pydicom.dcmread(path)
        if ds.get("RequestedProcedurePriority", "") != "STAT":
            ds.RequestedProcedurePriority = "STAT"
            ds.save_as(path)
    return path


def make_studies(root: Path, *, n_routine: int, seed: int, jobs: int) -> tuple[list[Path], Path]:
    """Return the routine files (one per study) and the STAT file, rendering what is missing."""
    work = [(root / "routine", seed + i, False) for i in range(n_routine)]
    work.append((root / "stat", seed + STAT_SEED_OFFSET, True))
    t = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        files = pool.map(_render, work, chunksize=1)
    print(f"studies ready in {time.perf_counter() - t:.0f} s ({root})", flush=True)
    return files[:-1], files[-1]


STORESCU_CFG = """\
[[TransferSyntaxes]]
[Uncompressed]
TransferSyntax1 = LittleEndianExplicit
TransferSyntax2 = LittleEndianImplicit
[RLE]
TransferSyntax1 = RLELossless
[JPEGLS]
TransferSyntax1 = JPEGLSLossless
[J2K]
TransferSyntax1 = JPEG2000LosslessOnly
[[PresentationContexts]]
[Radiographs]
{contexts}
[[Profiles]]
[Radiographs]
PresentationContexts = Radiographs
"""
RADIOGRAPH_CLASSES = (
    "ComputedRadiographyImageStorage",
    "DigitalXRayImageStorageForPresentation",
    "DigitalXRayImageStorageForProcessing",
)


def storescu_config(path: Path) -> Path:
    """Write a storescu profile with one context per radiograph class and transfer syntax.

    storescu proposes only uncompressed syntaxes by default and cannot transcode JPEG-LS or
    JPEG 2000, so each file must find a context in its own (lossless) syntax.
    """
    pairs = [(c, ts) for c in RADIOGRAPH_CLASSES for ts in ("Uncompressed", "RLE", "JPEGLS", "J2K")]
    lines = [f"PresentationContext{i} = {c}\\{ts}" for i, (c, ts) in enumerate(pairs, 1)]
    path.write_text(STORESCU_CFG.format(contexts="\n".join(lines)))
    return path


def storescu(port: int, files: list[Path], *, config: Path) -> float:
    """Send ``files`` in one association (the radiograph profile); return wall seconds."""
    cmd = ["storescu", "-xf", str(config), "Radiographs", "-aet", CALLING_AE, "-aec", "TRIAGE"]
    env = {**os.environ, "TCP_NODELAY": "1"}  # dcmtk >= 3.6.2 leaves Nagle on otherwise
    t = time.perf_counter()
    proc = subprocess.run(
        [*cmd, "127.0.0.1", str(port), *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if proc.returncode != 0 or "E:" in proc.stderr:
        raise RuntimeError(
            f"storescu must succeed, got rc {proc.returncode}:\n{proc.stderr[-2000:]}"
        )
    return time.perf_counter() - t


def read_studies(db_path: Path) -> list[dict[str, Any]]:
    """Return every study row (timing columns only; no patient data is read)."""
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as con:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute(f"SELECT {COLUMNS} FROM studies")]


def wait_until_finished(db_path: Path, n_studies: int, *, timeout_s: float) -> list[dict[str, Any]]:
    """Poll the store until ``n_studies`` studies are finished; print progress every 30 s."""
    deadline, last_print = time.monotonic() + timeout_s, 0.0
    while True:
        rows = read_studies(db_path)
        done = sum(r["state"] in FINISHED for r in rows)
        if len(rows) >= n_studies and done == len(rows):
            return rows
        if time.monotonic() - last_print > 30:
            print(f"  {done}/{n_studies} finished", flush=True)
            last_print = time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"all {n_studies} studies must finish within {timeout_s:.0f} s, got {done} finished"
            )
        time.sleep(1.0)


def _pcts(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    return {
        "n": int(a.size),
        "p50_s": round(float(np.percentile(a, 50)), 2),
        "p95_s": round(float(np.percentile(a, 95)), 2),
        "max_s": round(float(a.max()), 2),
    }


def analyse(rows: list[dict[str, Any]], send_s: dict[str, float]) -> dict[str, Any]:
    """Return the time-to-flag figures, the STAT study's place in the queue and the throughput."""
    # A study finished without analysis (no images) never started: count it as started at its end.
    rows = [{**r, "started_at": r["started_at"] or r["finished_at"]} for r in rows]
    stat = next(r for r in rows if r["order_priority"] == "stat")
    routine = [r for r in rows if r is not stat]
    arrival = stat["last_received_at"]
    order = sorted(rows, key=lambda r: r["started_at"])
    between = [r for r in routine if arrival < r["started_at"] < stat["started_at"]]
    first_start = min(r["started_at"] for r in rows)
    last_finish = max(r["finished_at"] for r in rows)
    analysis_s = [r["finished_at"] - r["started_at"] for r in rows]
    return {
        "time_to_flag": {
            "stat": _pcts([stat["flagged_at"] - arrival]),
            "routine": _pcts([r["flagged_at"] - r["last_received_at"] for r in routine]),
        },
        "routine_flagged_after_stat": sum(r["flagged_at"] > stat["flagged_at"] for r in routine),
        "routine_not_started_when_stat_arrived": sum(r["started_at"] > arrival for r in routine),
        "routine_running_when_stat_arrived": sum(
            r["started_at"] <= arrival < r["finished_at"] for r in routine
        ),
        "routine_started_between_stat_arrival_and_stat_start": len(between),
        "stat_analysis_position": 1 + order.index(stat),
        "stat_wait": {
            "arrival_to_queued_s": round(stat["completed_at"] - arrival, 2),
            "queued_to_started_s": round(stat["started_at"] - stat["completed_at"], 2),
            "analysis_s": round(stat["finished_at"] - stat["started_at"], 2),
        },
        "analysis_s_per_study": _pcts(analysis_s),
        "throughput_studies_per_min": round(60 * len(rows) / (last_finish - first_start), 2),
        "drain_after_last_arrival_s": round(last_finish - arrival, 1),
        "first_receipt_to_last_flag_s": round(
            last_finish - min(r["first_received_at"] for r in rows), 1
        ),
        "send_s": {k: round(v, 1) for k, v in send_s.items()},
        "states": {
            s: sum(r["state"] == s for r in rows) for s in sorted({r["state"] for r in rows})
        },
        "ai_priorities": {
            p: sum(r["ai_priority"] == p for r in rows)
            for p in sorted({str(r["ai_priority"]) for r in rows})
        },
        "retried_studies": [r["uid_hash"] for r in rows if r["attempts"] > 1],
    }


def print_report(fig: dict[str, Any], n_routine: int) -> None:
    """Print the figures as a small table and a few lines."""
    ttf = fig["time_to_flag"]
    print(
        f"\ntime-to-flag (flagged_at - last_received_at), {n_routine} routine + 1 STAT radiographs"
    )
    print("study     n     p50 s    p95 s    max s")
    for name in ("stat", "routine"):
        f = ttf[name]
        print(f"{name:8s}{f['n']:4d}{f['p50_s']:9.1f}{f['p95_s']:9.1f}{f['max_s']:9.1f}")
    ratio = ttf["routine"]["p50_s"] / max(ttf["stat"]["p50_s"], 1e-9)
    print(f"routine p50 / STAT: {ratio:.1f}x")
    print(
        f"routine studies flagged after the STAT one: {fig['routine_flagged_after_stat']}"
        f" of {n_routine}"
    )
    print(
        f"STAT analysed in position {fig['stat_analysis_position']} of {n_routine + 1}; "
        f"when it arrived {fig['routine_not_started_when_stat_arrived']} routine studies had "
        f"not started and {fig['routine_running_when_stat_arrived']} was running; "
        f"{fig['routine_started_between_stat_arrival_and_stat_start']} routine started between "
        f"its arrival and its start"
    )
    w = fig["stat_wait"]
    print(
        f"STAT: arrival -> queued {w['arrival_to_queued_s']} s, queued -> started "
        f"{w['queued_to_started_s']} s, analysis {w['analysis_s']} s"
    )
    a = fig["analysis_s_per_study"]
    print(
        f"analysis per study p50 {a['p50_s']} s, p95 {a['p95_s']} s; throughput "
        f"{fig['throughput_studies_per_min']} studies/min; drain after the last arrival "
        f"{fig['drain_after_last_arrival_s']} s; first receipt -> last flag "
        f"{fig['first_receipt_to_last_flag_s']} s"
    )
    print(f"send: {fig['send_s']}; states: {fig['states']}; AI priorities: {fig['ai_priorities']}")


def service_log_problems(log: Path) -> list[str]:
    """Return the service log lines at WARNING or above (the log never holds patient data)."""
    if not log.exists():
        return []
    keys = ('"level": "ERROR"', '"level": "WARNING"', '"level": "CRITICAL"', "Traceback")
    return [
        line[:400]
        for line in log.read_text(errors="replace").splitlines()
        if any(k in line for k in keys)
    ]


def wait_for_workers(log: Path, n_workers: int, *, timeout_s: float = 300.0) -> float:
    """Wait until ``n_workers`` workers logged "worker ready" (models loaded); return seconds.

    ``/api/v1/health/ready`` answers 200 once the worker processes are alive, before they have
    loaded their models, so a study sent at once would wait for the loading.
    """
    t = time.perf_counter()
    while time.perf_counter() - t < timeout_s:
        if log.read_text(errors="replace").count("worker ready") >= n_workers:
            return time.perf_counter() - t
        time.sleep(0.2)
    raise TimeoutError(f"{n_workers} workers must be ready within {timeout_s:.0f} s, got fewer")


def run(args: argparse.Namespace, routine: list[Path], stat: Path, work: Path) -> dict[str, Any]:
    """Start the engine, send the backlog then the STAT study, wait, and return the figures."""
    env = {
        "TRIAGE_WORKERS": str(args.workers),
        "TRIAGE_THREADS": str(args.threads),
        "TRIAGE_QUIET_PERIOD_S": "10",  # the engine's defaults (ServiceProcess shortens them)
        "TRIAGE_EARLY_QUIET_S": "1",
    }
    engine = ServiceProcess(work / "engine", allow={CALLING_AE: "127.0.0.1"}, env=env)
    with engine:
        models_load_s = wait_for_workers(engine.log_path, args.workers)
        cfg = storescu_config(work / "storescu.cfg")
        send_s = {"routine": storescu(engine.dicom_port, routine, config=cfg)}
        send_s["stat"] = storescu(engine.dicom_port, [stat], config=cfg)
        print(f"sent {len(routine)} routine in {send_s['routine']:.1f} s, then STAT", flush=True)
        rows = wait_until_finished(
            engine.data_dir / "triage.db", len(routine) + 1, timeout_s=args.timeout_s
        )
        problems = service_log_problems(engine.log_path)
    return {
        **analyse(rows, send_s),
        "health_ready_to_workers_ready_s": round(models_load_s, 1),
        "engine_log_warnings": problems,
    }


def main() -> None:
    """Generate (or reuse) the studies, run the engine on them and print the figures."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-routine", type=int, default=200)
    p.add_argument("--seed", type=int, default=40_000, help="routine seeds seed..seed+n-1")
    p.add_argument(
        "--studies-dir",
        type=Path,
        default=None,
        help="cache of rendered studies (default: <tmp>/triage-bench-ttf-<seed>)",
    )
    p.add_argument("--workers", type=int, default=1, help="TRIAGE_WORKERS")
    p.add_argument("--threads", type=int, default=0, help="TRIAGE_THREADS (0: onnxruntime picks)")
    p.add_argument("--jobs", type=int, default=2, help="processes rendering the studies")
    p.add_argument("--timeout-s", type=float, default=3600.0)
    args = p.parse_args()
    root = args.studies_dir or Path(tempfile.gettempdir()) / f"triage-bench-ttf-{args.seed}"
    routine, stat = make_studies(root, n_routine=args.n_routine, seed=args.seed, jobs=args.jobs)
    with tempfile.TemporaryDirectory(prefix="bench-ttf-") as tmp:
        t, load_start = time.perf_counter(), os.getloadavg()
        fig = run(args, routine, stat, Path(tmp))
        fig["benchmark_wall_s"] = round(time.perf_counter() - t, 1)
        fig["loadavg_start_end"] = [load_start, os.getloadavg()]
    print_report(fig, args.n_routine)
    print("engine log lines at WARNING or above:", len(fig["engine_log_warnings"]))
    command = (
        "nice -n 5 .venv/bin/python -m benchmarks.bench_time_to_flag "
        f"--n-routine {args.n_routine} --seed {args.seed} --workers {args.workers}"
    )
    print("command:", command)
    conditions = {
        "studies": f"{args.n_routine} routine + 1 STAT synthetic radiographs (CR/DX, chest and "
        "limb, transfer syntax drawn from the seed), one image each",
        "engine": f"triage serve, shipped models, {args.workers} worker(s), TRIAGE_THREADS "
        f"{args.threads}, quiet period 10 s, early quiet 1 s (defaults)",
        "sender": "dcmtk storescu (profile: one context per radiograph class and lossless "
        "syntax), TCP_NODELAY=1, routine in one association, then STAT in a second",
    }
    write_result(
        "time_to_flag",
        {
            **fig,
            "conditions": conditions,
            "command": command,
            "n_routine": args.n_routine,
            "seed": args.seed,
        },
    )


if __name__ == "__main__":
    main()
