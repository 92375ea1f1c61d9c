"""Operational errors of the triage engine (STYLE H13).

Builtins (``ValueError``, ``TypeError``) signal programmer misuse. The classes here signal
operational failures that an edge maps once: to a study outcome (NOT_ANALYSED / FAILED), an HTTP
status or a DIMSE status. Messages never carry patient identifiers (STYLE H14).
"""

from __future__ import annotations


class TriageError(Exception):
    """Base of every operational failure; its message is safe to show and to log."""


class UnsupportedStudy(TriageError):
    """The study has no series that qualifies for a task (wrong modality, body part, geometry)."""


class InvalidSeries(TriageError):
    """A series cannot become a volume: gaps, duplicates, mixed orientation, bad pixel spacing."""


class ModelUnavailable(TriageError):
    """Weights missing, checksum mismatch, card invalid, or the runtime cannot be reached."""


class InferenceFailed(TriageError):
    """The runtime raised or returned outputs that break the model card's contract."""


class ConfigurationError(TriageError):
    """A setting cannot apply to what is loaded (e.g. a policy asks for an operating point the
    model's card does not record); the message names the setting to change."""
