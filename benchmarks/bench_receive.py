"""DICOM receive rate: the engine's Storage SCP next to Orthanc's, same files, same run (issue #3).

Run it in a private network namespace (Orthanc 1.10 always binds 0.0.0.0), from the repo root:

    unshare -n sh -c 'ip link set lo up && \
        exec nice -n 5 .venv/bin/python -m benchmarks.bench_receive --repeat 3'

Starts real Orthanc servers (``/usr/sbin/Orthanc``) and a real engine (``triage serve``), then
sends the 133-slice LIDC-IDRI-0001 CT with dcmtk ``storescu`` (one association per send, calling
AE ``STORESCU``) to each, alternating which target goes first. Each send is timed wall-clock around
the ``storescu`` process, so process start and association set-up are included (the ``echoscu``
line shows how much that is). Two modes, both on identical bytes for both targets:

* ``resend``: the original files, already stored once (untimed warm-up). The engine rewrites and
  fsyncs each file again; Orthanc runs with ``OverwriteInstances: true`` so it rewrites them too.
* ``fresh``: a copy of the series with new Study/Series/SOP UIDs per repeat (first receipt).

Two transports, because dcmtk >= 3.6.2 leaves Nagle's algorithm on unless the environment says
``TCP_NODELAY=1`` (Orthanc's own static builds compile it off; the Debian package links the system
dcmtk and does not), which costs tens of ms per instance:

* ``nodelay``: ``TCP_NODELAY=1`` for storescu and for that Orthanc (the fair comparison).
* ``dcmtk-default``: storescu and a second Orthanc with the dcmtk default (Nagle on).

pynetdicom (the engine) does not set TCP_NODELAY either; as the receiving side it only answers
one small C-STORE-RSP per instance, so Nagle does not hold it up.

Durability is not the same on both sides, and the output says so: the engine acknowledges an
instance only after fsync(file) + fsync(directory) + a SQLite commit with ``synchronous=FULL``;
Orthanc 1.10.1 with ``SyncStorageArea: true`` (its default since 1.7.4) calls fdatasync on the
file, not on the directory, and its SQLite index runs ``synchronous=NORMAL`` in WAL mode (commits
are not fsynced; ``strings /usr/sbin/Orthanc`` shows the PRAGMAs). The engine never analyses
during the run: its quiet periods are set to a day.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pynetdicom
from pydicom.uid import generate_uid

from benchmarks._common import shared_data, write_result
from tests.conftest import lidc_series_dir
from tests.netns import interface_names
from tests.orthanc import OrthancServer
from tests.service_process import ServiceProcess

CALLING_AE = "STORESCU"
DAY_S = "86400"
TRANSPORTS = ("nodelay", "dcmtk-default")
COMMAND = (
    "unshare -n sh -c 'ip link set lo up && exec nice -n 5 "
    ".venv/bin/python -m benchmarks.bench_receive --repeat {repeat}{extra}'"
)


class BenchOrthanc(OrthancServer):
    """The tests' Orthanc, with its storage options stated, and Nagle on or off (dcmtk env)."""

    def __init__(self, work_dir: Path, *, max_pdu_bytes: int, nodelay: bool) -> None:
        super().__init__(work_dir)
        self.max_pdu_bytes, self.nodelay = max_pdu_bytes, nodelay

    def config(self) -> dict[str, Any]:
        """Return the tests' config plus explicit storage options (their 1.10.1 defaults)."""
        return {
            **super().config(),
            "SyncStorageArea": True,  # default since 1.7.4: fdatasync each stored file
            "StorageCompression": False,
            "StoreMD5ForAttachments": True,
            "OverwriteInstances": True,  # a re-sent instance is rewritten, as in the engine
            "MaximumPduLength": self.max_pdu_bytes,
        }

    def start(self) -> None:
        """Start Orthanc with ``TCP_NODELAY=1`` in its environment, or without it."""
        saved = os.environ.pop("TCP_NODELAY", None)
        if self.nodelay:
            os.environ["TCP_NODELAY"] = "1"
        try:
            super().start()
        finally:
            os.environ.pop("TCP_NODELAY", None)
            if saved is not None:
                os.environ["TCP_NODELAY"] = saved


@dataclass(frozen=True)
class Target:
    """A Storage SCP to send to."""

    name: str
    ae_title: str
    port: int


def _dcmtk_env(nodelay: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TCP_NODELAY"}
    return {**env, "TCP_NODELAY": "1"} if nodelay else env


def storescu(target: Target, files: list[Path], *, nodelay: bool) -> float:
    """Send ``files`` in one association; return wall seconds. Raises if any store failed."""
    cmd = ["storescu", "-aet", CALLING_AE, "-aec", target.ae_title, "127.0.0.1", str(target.port)]
    env = _dcmtk_env(nodelay)
    t = time.perf_counter()
    proc = subprocess.run(
        [*cmd, *map(str, files)], capture_output=True, text=True, check=False, env=env
    )
    seconds = time.perf_counter() - t
    if proc.returncode != 0 or "E:" in proc.stderr:
        raise RuntimeError(
            f"storescu to {target.name} must succeed, got rc {proc.returncode}:\n"
            f"{proc.stderr[-2000:]}"
        )
    return seconds


def echoscu(target: Target, *, nodelay: bool, repeat: int = 5) -> float:
    """Return the median wall seconds of an ``echoscu`` (process + association, no data)."""
    cmd = ["echoscu", "-aet", CALLING_AE, "-aec", target.ae_title, "127.0.0.1", str(target.port)]
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=_dcmtk_env(nodelay))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def fresh_copy(files: list[Path], out_dir: Path) -> list[Path]:
    """Write ``files`` again with new Study/Series/SOP Instance UIDs (one study, one series)."""
    out_dir.mkdir(parents=True)
    study_uid, series_uid, out = generate_uid(), generate_uid(), []
    for i, path in enumerate(files):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        dest = out_dir / f"{i:04d}.dcm"
        ds.save_as(dest)
        out.append(dest)
    return out


def run_sends(
    targets: list[Target], sets: list[list[Path]], *, mode: str, transport: str
) -> list[dict[str, object]]:
    """Send set ``r`` to every target, alternating which goes first; one row per send."""
    rows: list[dict[str, object]] = []
    for r, files in enumerate(sets):
        order = targets if r % 2 == 0 else targets[::-1]
        for target in order:
            seconds = storescu(target, files, nodelay=transport == "nodelay")
            rows.append(
                {
                    "transport": transport,
                    "mode": mode,
                    "repeat": r,
                    "target": target.name.split("-")[0],
                    "seconds": round(seconds, 3),
                    "instances": len(files),
                }
            )
            print(
                f"  {transport:13s} {mode:6s} #{r} {target.name:21s} {seconds:6.2f} s "
                f"{len(files) / seconds:6.1f} inst/s",
                flush=True,
            )
    return rows


def summarise(rows: list[dict[str, Any]], transport: str, mode: str, target: str) -> dict[str, Any]:
    """Return instances/s (median, min, max) and ms per instance for one block of sends."""
    mine = [
        r for r in rows if (r["transport"], r["mode"], r["target"]) == (transport, mode, target)
    ]
    rates = [r["instances"] / r["seconds"] for r in mine]
    per_ms = [1000.0 * r["seconds"] / r["instances"] for r in mine]
    return {
        "n_sends": len(mine),
        "inst_per_s_median": round(statistics.median(rates), 1),
        "inst_per_s_min": round(min(rates), 1),
        "inst_per_s_max": round(max(rates), 1),
        "ms_per_instance_median": round(statistics.median(per_ms), 1),
    }


def print_table(figures: dict[str, dict[str, Any]], echo_ms: dict[str, float]) -> None:
    """Print one line per block and target, with the engine / Orthanc ratio of the medians."""
    print("\ntransport      mode    target    inst/s median (min-max)  ms/instance  sends  ratio")
    for block, per_target in figures.items():
        transport, mode = block.split("/")
        o, e = per_target["orthanc"], per_target["engine"]
        ratio = e["inst_per_s_median"] / o["inst_per_s_median"]
        for name, f in (("orthanc", o), ("engine", e)):
            tail = f"  engine/orthanc {ratio:.2f}" if name == "engine" else ""
            print(
                f"{transport:14s} {mode:7s} {name:9s} {f['inst_per_s_median']:7.1f} "
                f"({f['inst_per_s_min']:.1f}-{f['inst_per_s_max']:.1f})".ljust(50)
                + f"{f['ms_per_instance_median']:8.1f}{f['n_sends']:7d}{tail}"
            )
    print(
        "echoscu (process + association, no data), median ms: "
        + ", ".join(f"{k} {v:.0f}" for k, v in echo_ms.items())
    )


def engine_instances(db_path: Path) -> int:
    """Return how many instances the engine's store holds (read-only)."""
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as con:
        return int(con.execute("SELECT COUNT(*) FROM instances").fetchone()[0])


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


def tool_versions(orthanc: OrthancServer) -> dict[str, object]:
    """Return the versions and machine facts that are not in ``_common.environment``."""
    dcmtk = subprocess.run(["storescu", "--version"], capture_output=True, text=True, check=False)
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "orthanc": orthanc.rest("GET", "/system").json().get("Version"),
        "dcmtk": dcmtk.stdout.splitlines()[0] if dcmtk.stdout else "",
        "pynetdicom": pynetdicom.__version__,
        "pydicom": pydicom.__version__,
        "cpu_model": cpu,
        "nproc": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
    }


@dataclass
class Servers:
    """The receivers of one run: one Orthanc per transport, one engine shared by both."""

    orthanc: dict[str, BenchOrthanc]
    engine: ServiceProcess

    def targets(self, transport: str) -> list[Target]:
        """Return the Orthanc of ``transport`` and the engine."""
        o = self.orthanc[transport]
        return [
            Target(f"orthanc-{transport}", o.aet, o.dicom_port),
            Target("engine", self.engine.ae_title, self.engine.dicom_port),
        ]


@contextlib.contextmanager
def servers(work: Path, transports: list[str], *, orthanc_pdu: int) -> Iterator[Servers]:
    """Start the Orthancs and the engine (allow list: STORESCU from 127.0.0.1); stop all after."""
    engine = ServiceProcess(
        work / "engine",
        allow={CALLING_AE: "127.0.0.1"},
        env={"TRIAGE_QUIET_PERIOD_S": DAY_S, "TRIAGE_EARLY_QUIET_S": DAY_S, "TRIAGE_WORKERS": "1"},
    )
    with contextlib.ExitStack() as stack:
        orthancs = {
            t: stack.enter_context(
                BenchOrthanc(
                    work / f"orthanc-{t}", max_pdu_bytes=orthanc_pdu, nodelay=t == "nodelay"
                )
            )
            for t in transports
        }
        stack.enter_context(engine)
        yield Servers(orthancs, engine)


def measure(args: argparse.Namespace, files: list[Path], work: Path) -> dict[str, Any]:
    """Run every send; return the rows, the summaries and the checks."""
    transports = list(TRANSPORTS) if args.transport == "both" else [args.transport]
    modes = ["resend"] + ([] if args.no_fresh else ["fresh"])
    rows: list[dict[str, object]] = []
    with servers(work, transports, orthanc_pdu=args.orthanc_pdu) as srv:
        versions = tool_versions(next(iter(srv.orthanc.values())))
        echo_ms = {
            f"{t.name} ({tr})": 1000 * echoscu(t, nodelay=tr == "nodelay")
            for tr in transports
            for t in srv.targets(tr)
        }
        print(f"warm-up: first receipt of the original {len(files)} files (untimed)")
        for tr in transports:
            run_sends(srv.targets(tr), [files], mode="warmup", transport=tr)
        for tr in transports:
            rows += run_sends(srv.targets(tr), [files] * args.repeat, mode="resend", transport=tr)
            if not args.no_fresh:
                sets = [fresh_copy(files, work / f"fresh-{tr}-{r}") for r in range(args.repeat)]
                rows += run_sends(srv.targets(tr), sets, mode="fresh", transport=tr)
        per_orthanc = len(files) * (1 + (len(modes) - 1) * args.repeat)
        stored = {
            **{
                f"orthanc-{t}": o.rest("GET", "/statistics").json()["CountInstances"]
                for t, o in srv.orthanc.items()
            },
            "engine": engine_instances(srv.engine.data_dir / "triage.db"),
            "expected_orthanc_each": per_orthanc,
            "expected_engine": len(files) + (per_orthanc - len(files)) * len(transports),
        }
        problems = service_log_problems(srv.engine.log_path)
        versions["loadavg_at_end"] = os.getloadavg()
    figures = {
        f"{tr}/{m}": {t: summarise(rows, tr, m, t) for t in ("orthanc", "engine")}
        for tr in transports
        for m in modes
    }
    return {
        "versions": versions,
        "echo_ms": echo_ms,
        "figures": figures,
        "rows": rows,
        "stored_instances": stored,
        "engine_log_warnings": problems,
    }


def conditions(args: argparse.Namespace, files: list[Path]) -> dict[str, str]:
    """Describe what each side did before acknowledging, and how the sends were made."""
    return {
        "engine": "ack after fsync(file) + fsync(dir) + SQLite WAL commit synchronous=FULL; "
        "TRIAGE_MAX_PDU_BYTES 65536; quiet periods 1 day (no analysis during the run); 1 worker "
        "process idle; pynetdicom does not set TCP_NODELAY",
        "orthanc": "SyncStorageArea true (fdatasync file, no dir fsync); SQLite index WAL "
        "synchronous=NORMAL (commit not fsynced); OverwriteInstances true; "
        f"MaximumPduLength {args.orthanc_pdu}; StorageCompression false; StoreMD5 true; "
        "DICOMweb plugin loaded",
        "sender": "dcmtk storescu, one association per send, default presentation contexts, "
        "timed around the process (includes start-up + association: see echoscu); "
        "nodelay = TCP_NODELAY=1 for storescu and that Orthanc, dcmtk-default = Nagle on",
        "files": f"{len(files)} files, {sum(f.stat().st_size for f in files) / 1e6:.1f} MB, "
        "explicit VR little endian CT",
        "processes": "everything started by this script runs at the nice level it was given",
    }


def main() -> None:
    """Measure both receivers and print the table, the ratio, the conditions and the command."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=3, help="timed sends per target and block")
    p.add_argument("--series", type=Path, default=None, help="default: LIDC-IDRI-0001, 133 files")
    p.add_argument(
        "--no-fresh", action="store_true", help="skip the fresh-UID (first receipt) runs"
    )
    p.add_argument("--transport", choices=[*TRANSPORTS, "both"], default="both")
    p.add_argument(
        "--orthanc-pdu",
        type=int,
        default=65536,
        help="Orthanc MaximumPduLength (default: the engine's TRIAGE_MAX_PDU_BYTES)",
    )
    args = p.parse_args()
    extra = (" --no-fresh" if args.no_fresh else "") + (
        f" --transport {args.transport}" if args.transport != "both" else ""
    )
    command = COMMAND.format(repeat=args.repeat, extra=extra)
    if interface_names() != ["lo"]:
        raise SystemExit(f"run in a private network namespace (Orthanc binds 0.0.0.0):\n{command}")
    files = sorted((args.series or lidc_series_dir(shared_data())).glob("*.dcm"))
    with tempfile.TemporaryDirectory(prefix="bench-receive-") as tmp:
        out = measure(args, files, Path(tmp))
    print_table(out["figures"], out["echo_ms"])
    cond = conditions(args, files)
    print("stored:", out["stored_instances"])
    print("engine log lines at WARNING or above:", len(out["engine_log_warnings"]))
    print("conditions:", *(f"  {k}: {v}" for k, v in cond.items()), sep="\n")
    print("command:", command)
    write_result("receive", {**out, "conditions": cond, "command": command})


if __name__ == "__main__":
    main()
