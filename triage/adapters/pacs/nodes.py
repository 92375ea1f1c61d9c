"""The PACS nodes the engine talks to, read from ``configs/pacs_nodes.yaml`` (STYLE H17).

The shape follows the ecosystem's own terms: a node is what Orthanc calls a *modality* and dcm4chee
an *AE*: an AE title, host and port, plus an optional DICOMweb root and REST root. Role flags say
what the engine does with it (send results, pull studies, flag priority) and how (DIMSE or
DICOMweb), so one file describes a whole site and nothing is guessed at run time.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from triage.adapters.pacs.yaml_file import read_yaml

AE_TITLE_MAX_CHARS = 16
# PS3.5 6.2 AE VR: default character repertoire without backslash or control characters.
_AE_TITLE = re.compile(r"[\x20-\x5b\x5d-\x7e]+")
_URL = re.compile(r"https?://[^\s/]+(/\S*)?")
_SECRET_FIELDS = frozenset({"password", "token"})


class AuthKind(StrEnum):
    """How HTTP requests (DICOMweb, REST) authenticate."""

    NONE = "none"
    BASIC = "basic"
    BEARER = "bearer"


class RetrieveMethod(StrEnum):
    """How a study is fetched: WADO-RS, C-MOVE to the engine's own SCP, or C-GET."""

    WADO = "wado"
    CMOVE = "cmove"
    CGET = "cget"


class QueryMethod(StrEnum):
    """How new studies are found: QIDO-RS or C-FIND."""

    QIDO = "qido"
    CFIND = "cfind"


class SendMethod(StrEnum):
    """How results (SR) are delivered: C-STORE or STOW-RS."""

    CSTORE = "cstore"
    STOW = "stow"


class FlagKind(StrEnum):
    """Where the study priority is written; ``orthanc`` uses study metadata over REST."""

    NONE = "none"
    ORTHANC = "orthanc"


class NodeAuth(BaseModel):
    """HTTP credentials of a node; secrets stay ``SecretStr`` so they never print."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: AuthKind = AuthKind.NONE
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None

    @model_validator(mode="after")
    def _credentials_match_kind(self) -> Self:
        if self.kind is AuthKind.BASIC and (not self.username or self.password is None):
            raise ValueError("auth.kind 'basic' must come with username and password, got none")
        if self.kind is AuthKind.BEARER and self.token is None:
            raise ValueError("auth.kind 'bearer' must come with a token, got none")
        return self


class PacsNode(BaseModel):
    """One remote DICOM node and the engine's roles towards it.

    Attributes:
        name: the node's key in logs and in the outbox (letters, digits, ``._-``).
        ae_title: the node's AE title (called AE), 1-16 characters of the AE VR.
        host: hostname or IP address of its DIMSE port.
        port: its DIMSE port.
        dicomweb_url: DICOMweb root, e.g. ``http://pacs:8042/dicom-web``; needed by ``qido``,
            ``wado`` and ``stow``.
        rest_url: Orthanc REST root, e.g. ``http://pacs:8042``; needed by ``flag_target: orthanc``.
        auth: credentials for both HTTP roots.
        send_to: SRs are delivered here, by ``send``.
        pull_from: the engine polls it for new studies, by ``query``, and fetches by ``retrieve``.
        flag_target: where the study priority is written, if anywhere.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    ae_title: str = Field(min_length=1, max_length=AE_TITLE_MAX_CHARS)
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    dicomweb_url: str | None = None
    rest_url: str | None = None
    auth: NodeAuth = NodeAuth()
    send_to: bool = False
    pull_from: bool = False
    send: SendMethod = SendMethod.CSTORE
    query: QueryMethod = QueryMethod.CFIND
    retrieve: RetrieveMethod = RetrieveMethod.CMOVE
    flag_target: FlagKind = FlagKind.NONE

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if not _AE_TITLE.fullmatch(self.ae_title) or not self.ae_title.strip():
            raise ValueError(
                "ae_title must be printable ASCII without backslash and not blank, "
                f"got {self.ae_title!r}"
            )
        for key in ("dicomweb_url", "rest_url"):
            url = getattr(self, key)
            if url is not None and not _URL.fullmatch(url):
                raise ValueError(f"{key} must be an http(s) URL, got {url!r}")
        needs_web = {
            "send: stow": self.send is SendMethod.STOW,
            "query: qido": self.query is QueryMethod.QIDO,
            "retrieve: wado": self.retrieve is RetrieveMethod.WADO,
        }
        for what, needed in needs_web.items():
            if needed and self.dicomweb_url is None:
                raise ValueError(f"dicomweb_url must be set for {what}, got none")
        if self.flag_target is FlagKind.ORTHANC and self.rest_url is None:
            raise ValueError("rest_url must be set for flag_target: orthanc, got none")
        return self


class NodesFile(BaseModel):
    """Schema of ``configs/pacs_nodes.yaml``: a version and the list of nodes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: int = Field(ge=1)
    nodes: list[PacsNode]

    @model_validator(mode="after")
    def _unique(self) -> Self:
        for what, values in (
            ("name", [n.name for n in self.nodes]),
            ("ae_title", [n.ae_title.strip() for n in self.nodes]),
        ):
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                raise ValueError(f"node {what}s must be unique, got duplicates {dupes}")
        return self


def load_nodes(path: Path) -> list[PacsNode]:
    """Read and validate a nodes file.

    Raises:
        ValueError: the file is unreadable, not YAML, or breaks the schema; the message names the
            field (``nodes.1.ae_title: …``) and never echoes a password or token.
    """
    raw = read_yaml(path, what="nodes file")
    try:
        return list(NodesFile.model_validate(raw).nodes)
    except ValidationError as e:
        raise ValueError(f"nodes file {path} is invalid: {_describe(e)}") from None


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"])
        msg = item["msg"].removeprefix("Value error, ")
        text = f"{loc}: {msg}" if loc else msg
        value = item.get("input")
        # Echo scalars only: a model-level error's input is the whole node, credentials included.
        secret = _SECRET_FIELDS.intersection(str(p) for p in item["loc"])
        if not secret and isinstance(value, str | int | float) and item["type"] != "value_error":
            text += f", got {value!r}"
        parts.append(text)
    return "; ".join(parts)
