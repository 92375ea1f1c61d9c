"""Operational errors of the PACS edge (STYLE H13)."""

from __future__ import annotations

from triage.core.errors import TriageError


class DeliveryError(TriageError):
    """A PACS did not take or answer a request: unreachable, rejected, aborted or a failure status.

    The outbox treats it as transient and retries; the message names the node, never the patient.
    """
