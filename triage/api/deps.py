"""Annotated dependencies: the context, and the caller checked for one right (STYLE H3 of FastAPI).

A route declares what it needs in its signature, e.g. ``user: Reviewer``; the check happens here,
once: 401 with ``WWW-Authenticate: Bearer`` when the token is missing or unknown, 403 when the
caller's role lacks the right.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from triage.api.auth import Principal, Right
from triage.api.changes import ChangeFeed
from triage.api.context import ApiContext
from triage.api.key_image import KeyImages

_bearer = HTTPBearer(
    auto_error=False,
    description="A token from the tokens file: `Authorization: Bearer <token>`.",
)


def get_context(request: Request) -> ApiContext:
    """Return the context ``create_app`` put on ``app.state``."""
    ctx: ApiContext = request.app.state.ctx
    return ctx


CtxDep = Annotated[ApiContext, Depends(get_context)]


def get_key_images(request: Request) -> KeyImages:
    """Return the app's key-image renderer (one per app: it serialises renders)."""
    images: KeyImages = request.app.state.key_images
    return images


def get_change_feed(request: Request) -> ChangeFeed:
    """Return the app's change feed (one per app: all event streams share its poll)."""
    feed: ChangeFeed = request.app.state.change_feed
    return feed


KeyImagesDep = Annotated[KeyImages, Depends(get_key_images)]
FeedDep = Annotated[ChangeFeed, Depends(get_change_feed)]


class Authorize:
    """A dependency that returns the caller when its token is known and its role has ``right``."""

    def __init__(self, right: Right) -> None:
        """Remember which right the route needs."""
        self.right = right

    def __call__(
        self,
        ctx: CtxDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    ) -> Principal:
        """Authenticate and authorise, or raise 401 / 403."""
        if credentials is None:
            raise HTTPException(
                401,
                "an Authorization: Bearer <token> header is required",
                headers={"WWW-Authenticate": "Bearer"},
            )
        principal = ctx.tokens.authenticate(credentials.credentials)
        if principal is None:
            raise HTTPException(
                401,
                "the bearer token must be one of the configured tokens, got an unknown token",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        if not principal.can(self.right):
            raise HTTPException(
                403,
                f"this action needs the {self.right.value!r} right, which the "
                f"{principal.role.value!r} role does not have",
            )
        return principal


NEEDS_READ = Depends(Authorize(Right.READ))
NEEDS_ADMIN = Depends(Authorize(Right.ADMIN))
Reader = Annotated[Principal, Depends(Authorize(Right.READ))]
Reviewer = Annotated[Principal, Depends(Authorize(Right.REVIEW))]
Storer = Annotated[Principal, Depends(Authorize(Right.STORE))]
Admin = Annotated[Principal, Depends(Authorize(Right.ADMIN))]


def remote_of(request: Request) -> str:
    """Return the caller's address for the audit trail ("" when unknown)."""
    return request.client.host if request.client else ""


RemoteDep = Annotated[str, Depends(remote_of)]
