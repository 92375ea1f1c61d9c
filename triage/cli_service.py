"""Service commands: ``triage serve`` and ``triage token``; ``cli.py`` registers them on the app.

Settings come from ``TRIAGE_*`` environment variables (see ``configs/service.env.example``); the
options here override the few that are changed most often on the command line.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from triage.api.auth import Role, hash_token, new_token
from triage.cli_support import console
from triage.logs import configure_service_logging


def serve(
    data_dir: Annotated[
        Path | None, typer.Option(help="Spool, store and outputs (TRIAGE_DATA_DIR).")
    ] = None,
    http_port: Annotated[int | None, typer.Option(help="HTTP port (TRIAGE_HTTP_PORT).")] = None,
    dicom_port: Annotated[int | None, typer.Option(help="DICOM port (TRIAGE_DICOM_PORT).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (TRIAGE_WORKERS).")] = None,
) -> None:
    """Run the engine: DICOM receiver, HTTP API + worklist page, and the analysis workers."""
    from triage.cli import build_engine  # noqa: PLC0415 - cli imports this module
    from triage.config import Settings  # noqa: PLC0415
    from triage.service import Service  # noqa: PLC0415 - loads FastAPI/pynetdicom only here

    overrides = {
        k: v
        for k, v in {
            "data_dir": data_dir, "http_port": http_port,
            "dicom_port": dicom_port, "workers": workers,
        }.items()
        if v is not None
    }  # fmt: skip
    settings = Settings(**overrides)  # type: ignore[arg-type]
    configure_service_logging(settings.log_format)
    service = Service(settings, build_engine)
    service.start()
    console.print(
        f"triage serving: DICOM {settings.ae_title}@{settings.dicom_host}:{service.scp.port}, "
        f"worklist http://{settings.http_host}:{settings.http_port}/"
    )
    service.serve_http()


def token(
    user: Annotated[str, typer.Option(help="Login name shown in the audit trail.")],
    role: Annotated[Role, typer.Option(help="radiologist | integrator | admin.")],
    file: Annotated[Path, typer.Option(help="Tokens file (TRIAGE_API_TOKENS_FILE).")],
) -> None:
    """Create a bearer token: print it once, store only its SHA-256 in FILE."""
    data: dict[str, Any] = {"version": 1, "tokens": []}
    if file.exists():
        data = yaml.safe_load(file.read_text()) or data
    if any(t.get("user") == user for t in data.get("tokens", [])):
        console.print(f"[red]user must be new in {file}, got existing {user!r}[/]")
        raise typer.Exit(2)
    secret = new_token()
    data.setdefault("tokens", []).append(
        {"user": user, "role": role.value, "token_sha256": hash_token(secret)}
    )
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(yaml.safe_dump(data, sort_keys=False))
    file.chmod(0o600)
    typer.echo(secret)


def pull(
    study_uid: Annotated[str, typer.Argument(help="StudyInstanceUID to fetch.")],
    from_node: Annotated[str, typer.Option("--from", help="Node name in the nodes file.")],
) -> None:
    """Fetch one study from a PACS node now (WADO-RS, C-GET, or C-MOVE to the running engine)."""
    from triage.adapters.pacs.nodes import load_nodes  # noqa: PLC0415
    from triage.adapters.pacs.poller import Puller  # noqa: PLC0415
    from triage.config import Settings  # noqa: PLC0415
    from triage.store.db import Store, migrate  # noqa: PLC0415
    from triage.store.ingest import IngestPolicy  # noqa: PLC0415
    from triage.store.spool import Spool  # noqa: PLC0415

    settings = Settings()
    if settings.pacs_nodes_file is None:
        console.print("[red]TRIAGE_PACS_NODES_FILE must be set to pull, got none[/]")
        raise typer.Exit(2)
    nodes = {n.name: n for n in load_nodes(settings.pacs_nodes_file)}
    if from_node not in nodes:
        console.print(f"[red]--from must be one of {sorted(nodes)}, got {from_node!r}[/]")
        raise typer.Exit(2)
    store = Store(settings.store_url())
    migrate(store.engine)
    puller = Puller(
        store,
        Spool(settings.data_dir / "spool"),
        IngestPolicy(max_disk_fill=settings.max_disk_fill),
        settings.ae_title,
        time.time,
    )
    n = puller.retrieve(nodes[from_node], study_uid)
    console.print(f"{n} instances retrieved from {from_node}; the running service analyses them")
