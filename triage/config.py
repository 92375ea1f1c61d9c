"""Settings (``TRIAGE_*`` environment) and the ``configs/*.yaml`` schemas; edges only (H16)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from triage.core.priority import FracturePolicy, LungPolicy, TriagePolicy

REPO_ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    """Process-wide settings; every field is a ``TRIAGE_<NAME>`` environment variable."""

    model_config = SettingsConfigDict(env_prefix="TRIAGE_", env_file=".env", extra="forbid")
    models_dir: Path = REPO_ROOT / "models"
    runtime: Literal["onnx", "torch", "triton"] = "onnx"
    triton_url: str | None = None  # gRPC host:port of a Triton server; needed by runtime="triton"
    device: str = "cpu"
    threads: int = Field(0, ge=0)
    policy_file: Path = REPO_ROOT / "configs" / "policy.yaml"
    series_rules_file: Path = REPO_ROOT / "configs" / "series_rules.yaml"
    institution_name: str | None = None
    ae_title: str = Field("TRIAGE", min_length=1, max_length=16)

    # --- service (`triage serve`) ---
    data_dir: Path = Path("triage-data")  # spool, store (SQLite) and outputs live here by default
    database_url: str | None = (
        None  # default: sqlite:///<data_dir>/triage.db; or postgresql+psycopg://
    )
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535)
    dicom_host: str = "0.0.0.0"
    dicom_port: int = Field(11112, ge=0, le=65535)
    dicom_allow_file: Path | None = REPO_ROOT / "configs" / "dicom_allow.yaml"  # calling AEs + IPs
    max_associations: int = Field(10, ge=1, le=200)
    max_pdu_bytes: int = Field(65536, ge=4096, le=4_194_304)
    check_called_ae: bool = True  # reject associations calling another AE title than ae_title
    max_disk_fill: float = Field(0.95, gt=0, le=1)
    quiet_period_s: float = Field(10.0, gt=0)
    early_quiet_s: float = Field(1.0, ge=0)
    restart_grace_s: float = Field(60.0, ge=0)  # after a restart, half-received studies wait longer
    workers: int = Field(1, ge=1, le=32)
    max_attempts: int = Field(3, ge=1, le=20)
    job_lease_s: float = Field(900.0, gt=0)
    pacs_nodes_file: Path | None = None  # e.g. configs/pacs_nodes.yaml: destinations, pull sources
    poll_interval_s: float = Field(60.0, gt=0)
    outbox_max_attempts: int = Field(8, ge=1)
    outbox_base_delay_s: float = Field(5.0, gt=0)
    api_tokens_file: Path | None = None  # YAML of {user, role, token_sha256}; see `triage token`
    emergency_locations: list[str] = ["ED", "ER", "EMERGENCY", "A&E"]
    log_format: Literal["json", "text"] = "json"

    def store_url(self) -> str:
        """Return the database URL: the setting, else SQLite in the data folder."""
        if self.database_url:
            return self.database_url
        path = (self.data_dir / "triage.db").resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the cached settings (tests build their own ``Settings`` instead)."""
    return Settings()


OPERATING_POINT: Final = "operating_point"
"""A policy ``min_score`` that means: the score the model's card records at 1 false positive per
scan (``metrics.synthetic_fresh_set.operating_point_1fp.score_threshold``)."""

MinScore = Annotated[float, Field(ge=0, le=1)] | Literal["operating_point"]


def _core_min_score(value: MinScore) -> float | None:
    return None if value == OPERATING_POINT else float(value)


class _LungPolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_score: MinScore = OPERATING_POINT
    urgent_diameter_mm: float = Field(8.0, gt=0)
    stat_diameter_mm: float | None = Field(None, gt=0)


class _FracturePolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_score: MinScore = OPERATING_POINT
    stat_score: float | None = Field(None, ge=0, le=1)
    stat_labels: list[str] = Field(default_factory=list)


class PolicyFile(BaseModel):
    """Schema of ``configs/policy.yaml``."""

    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1)
    lung_nodule: _LungPolicyFile = _LungPolicyFile()
    fracture: _FracturePolicyFile = _FracturePolicyFile()

    def to_policy(self) -> TriagePolicy:
        """Return the pure-core policy value."""
        return TriagePolicy(
            version=self.version,
            lung_nodule=LungPolicy(
                min_score=_core_min_score(self.lung_nodule.min_score),
                urgent_diameter_mm=self.lung_nodule.urgent_diameter_mm,
                stat_diameter_mm=self.lung_nodule.stat_diameter_mm,
            ),
            fracture=FracturePolicy(
                min_score=_core_min_score(self.fracture.min_score),
                stat_score=self.fracture.stat_score,
                stat_labels=tuple(self.fracture.stat_labels),
            ),
        )


def load_policy(path: Path) -> TriagePolicy:
    """Read and validate a policy file.

    Raises:
        ValueError: the file does not match the schema (message names the field).
    """
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ValueError(f"policy file must be readable, got {e.strerror}: {path}") from e
    return PolicyFile.model_validate(raw).to_policy()
