"""Settings (``TRIAGE_*`` environment) and the ``configs/*.yaml`` schemas; edges only (H16)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from triage.core.priority import FracturePolicy, LungPolicy, TriagePolicy

REPO_ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    """Process-wide settings; every field is a ``TRIAGE_<NAME>`` environment variable."""

    model_config = SettingsConfigDict(env_prefix="TRIAGE_", env_file=".env", extra="forbid")
    models_dir: Path = REPO_ROOT / "models"
    runtime: Literal["onnx", "torch"] = "onnx"
    device: str = "cpu"
    threads: int = Field(0, ge=0)
    policy_file: Path = REPO_ROOT / "configs" / "policy.yaml"
    series_rules_file: Path = REPO_ROOT / "configs" / "series_rules.yaml"
    institution_name: str | None = None
    ae_title: str = Field("TRIAGE", max_length=16)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the cached settings (tests build their own ``Settings`` instead)."""
    return Settings()


class _LungPolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_score: float = Field(0.5, ge=0, le=1)
    urgent_diameter_mm: float = Field(8.0, gt=0)
    stat_diameter_mm: float | None = Field(None, gt=0)


class _FracturePolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_score: float = Field(0.5, ge=0, le=1)
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
            lung_nodule=LungPolicy(**self.lung_nodule.model_dump()),
            fracture=FracturePolicy(
                min_score=self.fracture.min_score,
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
