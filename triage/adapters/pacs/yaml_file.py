"""Read a site configuration file (allow list, nodes) as YAML, with errors that leak nothing.

PyYAML's own messages quote the offending line, which in these files may hold a password or a
token; only the position is reported.
"""

from __future__ import annotations

from pathlib import Path

import yaml


def read_yaml(path: Path, *, what: str) -> object:
    """Return the parsed content of ``path``; ``what`` names the file in messages.

    Raises:
        ValueError: the file is unreadable or not valid YAML (position only, no content).
    """
    try:
        return yaml.safe_load(path.read_text())
    except OSError as e:
        raise ValueError(f"{what} must be readable, got {e.strerror}: {path}") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "a syntax error"
        raise ValueError(f"{what} must be valid YAML, got an error at {where}: {path}") from None
