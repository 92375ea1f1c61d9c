"""Triage engine: AI triage of chest CT and radiographs. Not for diagnostic use."""

__version__ = "0.1.0"
