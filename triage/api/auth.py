"""Bearer tokens, roles and rights: who may read the worklist, review it, store into it, run it.

Only the SHA-256 of each token is kept (in a YAML file, ``configs/api_tokens.example.yaml``), so a
leaked file does not leak a usable token. A presented token is hashed and compared with every entry
by :func:`hmac.compare_digest`, so the time taken says nothing about how close a guess was.

Roles map to rights in one table (:data:`ROLE_RIGHTS`); routes ask for a right, never for a role,
so a new role is one line here and no route changes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

TOKEN_BYTES = 32  # 256 bits of entropy; token_urlsafe gives 43 characters


class Role(StrEnum):
    """What a user is, as written in the tokens file."""

    RADIOLOGIST = "radiologist"
    INTEGRATOR = "integrator"
    ADMIN = "admin"


class Right(StrEnum):
    """What a route needs."""

    READ = "read"  # worklist, study detail, key images, live events
    REVIEW = "review"  # acknowledge an AI result, override a priority
    STORE = "store"  # send instances (STOW-RS)
    ADMIN = "admin"  # audit trail, outbox, configuration


ROLE_RIGHTS: dict[Role, frozenset[Right]] = {
    Role.RADIOLOGIST: frozenset({Right.READ, Right.REVIEW}),
    Role.INTEGRATOR: frozenset({Right.READ, Right.STORE}),
    Role.ADMIN: frozenset(Right),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: the user name goes into the audit trail, the role decides."""

    user: str
    role: Role

    def can(self, right: Right) -> bool:
        """Return whether this caller's role grants ``right``."""
        return right in ROLE_RIGHTS[self.role]


def hash_token(token: str) -> str:
    """Return the hex SHA-256 of a token, as the tokens file stores it.

    >>> hash_token("abc")[:16]
    'ba7816bf8f01cfea'
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """Return a fresh random token (URL-safe, 256 bits) to hand to one user, once."""
    return secrets.token_urlsafe(TOKEN_BYTES)


class TokenEntry(BaseModel):
    """One line of the tokens file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    user: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")
    role: Role
    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class TokenFile(BaseModel):
    """Schema of the tokens file: ``{version: 1, tokens: [{user, role, token_sha256}, ...]}``."""

    model_config = ConfigDict(extra="forbid")
    version: int = Field(1, ge=1, le=1)
    tokens: list[TokenEntry] = Field(default_factory=list)


class TokenBook:
    """The known tokens (as hashes) and whom each belongs to; immutable once built."""

    def __init__(self, entries: Iterable[TokenEntry]) -> None:
        """Keep ``entries``.

        Raises:
            ValueError: two entries share a token hash or a user name (the file is ambiguous).
        """
        self._entries = tuple(entries)
        hashes = [e.token_sha256 for e in self._entries]
        if len(set(hashes)) != len(hashes):
            raise ValueError("token_sha256 values must be unique, got a repeated hash")
        users = [e.user for e in self._entries]
        if len(set(users)) != len(users):
            dup = sorted({u for u in users if users.count(u) > 1})
            raise ValueError(f"user names must be unique in the tokens file, got repeats: {dup}")

    @classmethod
    def from_yaml(cls, path: Path) -> TokenBook:
        """Read and validate a tokens file.

        Raises:
            ValueError: the file is unreadable or does not match :class:`TokenFile`; the message
                names the field (never a token or hash value).
        """
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(f"tokens file must be readable YAML, got {type(e).__name__}") from e
        try:
            parsed = TokenFile.model_validate(raw if raw is not None else {})
        except ValidationError as e:
            where = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
            )
            raise ValueError(f"tokens file must match the schema, got errors at {where}") from None
        return cls(parsed.tokens)

    def __len__(self) -> int:
        """Return the number of known tokens."""
        return len(self._entries)

    def authenticate(self, token: str) -> Principal | None:
        """Return the caller a token belongs to, or None.

        Every entry is compared (no early exit), each in constant time, so timing reveals neither
        which entry matched nor how much of a hash a guess shared.
        """
        presented = hash_token(token)
        found: TokenEntry | None = None
        for entry in self._entries:
            if hmac.compare_digest(presented, entry.token_sha256):
                found = entry
        return None if found is None else Principal(found.user, found.role)
