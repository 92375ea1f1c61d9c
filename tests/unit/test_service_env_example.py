"""configs/service.env.example documents every setting, and its values are valid."""

from __future__ import annotations

import re
from pathlib import Path

from triage.config import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "service.env.example"


def test_every_setting_is_documented_and_nothing_else() -> None:
    names = set(re.findall(r"^#?\s*TRIAGE_([A-Z0-9_]+)=", EXAMPLE.read_text(), flags=re.M))
    assert {n.lower() for n in names} == set(Settings.model_fields)


def test_the_example_values_load() -> None:
    settings = Settings(_env_file=EXAMPLE)  # type: ignore[call-arg]
    assert settings.quiet_period_s == 10
    assert settings.emergency_locations == ["ED", "ER", "EMERGENCY", "A&E"]
