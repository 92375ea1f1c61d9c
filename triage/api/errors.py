"""Operational errors of the HTTP edge, and the one table that maps every TriageError to a status.

Routes raise domain errors (``NotFound``, ``OutOfResources``, ...) and never build error responses
themselves; ``app.py`` installs one handler that looks the class up here (STYLE H13). Messages are
shown to the caller as they are, so they never carry patient names or IDs (STYLE H14).
"""

from __future__ import annotations

from triage.core.errors import (
    InferenceFailed,
    InvalidSeries,
    ModelUnavailable,
    TriageError,
    UnsupportedStudy,
)
from triage.store.ingest import InvalidInstance, OutOfResources


class NotFound(TriageError):
    """The study, finding or outbox item named in the URL does not exist."""


class Conflict(TriageError):
    """The request is valid but the resource is not in a state that allows it."""


class NotRenderable(TriageError):
    """A key image cannot be drawn: the source images are gone or cannot be read."""


class BadRequest(TriageError):
    """The request is malformed in a way the schema cannot express (e.g. a multipart body)."""


class UnsupportedMediaType(TriageError):
    """The request body's media type is not one this route accepts."""


# An error gets the status of the first class of its MRO listed here (subclasses win).
HTTP_STATUS: dict[type[TriageError], int] = {
    NotFound: 404,
    Conflict: 409,
    BadRequest: 400,
    UnsupportedMediaType: 415,
    InvalidInstance: 400,
    UnsupportedStudy: 422,
    InvalidSeries: 422,
    NotRenderable: 422,
    OutOfResources: 503,
    ModelUnavailable: 503,
    InferenceFailed: 500,
    TriageError: 500,
}

RETRY_AFTER_S = 60  # sent with 503: the condition (disk full, model loading) is temporary


def status_for(error: TriageError) -> int:
    """Return the HTTP status of an operational error (500 for an unlisted subclass).

    >>> status_for(NotFound("x")), status_for(OutOfResources("y")), status_for(TriageError("z"))
    (404, 503, 500)
    """
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500
