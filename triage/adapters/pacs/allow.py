"""Which callers may open an association with the engine's SCP: ``configs/dicom_allow.yaml``.

Default deny. A caller is a calling AE title *and* the networks it may connect from, because an AE
title is just a string any device can claim. An absent or empty file lets nobody in, so a fresh
installation never accepts patient data from an unknown device by accident.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from pathlib import Path
from typing import Annotated, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from triage.adapters.pacs.yaml_file import read_yaml

logger = logging.getLogger(__name__)

AE_TITLE_MAX_CHARS = 16
# PS3.5 6.2 AE VR: default character repertoire without backslash or control characters.
_AE_TITLE = re.compile(r"[\x20-\x5b\x5d-\x7e]+")

HOW_TO_ADD = (
    "add an entry {ae_title: <CALLING AE>, hosts: [<ip or CIDR>]} under 'callers' in the DICOM "
    "allow list (TRIAGE_DICOM_ALLOW_FILE, default configs/dicom_allow.yaml) and restart"
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _network(value: object) -> Network:
    """Parse one ``hosts`` item: an address (a /32 or /128) or a CIDR with zero host bits.

    Strict on purpose: ``10.0.1.5/24`` is more likely a typo than a wish to allow the whole /24.
    """
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    text = str(value).strip()
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(
            f"host must be an IP address or CIDR network, got {text!r}; "
            "use 0.0.0.0/0 to allow any IPv4 host"
        ) from None
    raise ValueError(
        f"host must be a network with zero host bits, got {text!r}; did you mean {loose}?"
    )


class AllowedCaller(BaseModel):
    """One calling AE title and the networks it may connect from.

    Attributes:
        ae_title: the calling AE title, matched exactly (case-sensitive) after stripping spaces.
        hosts: addresses or CIDR networks, IPv4 or IPv6; at least one.
        description: free text for the reader of the file (which device, who owns it).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    ae_title: str = Field(min_length=1, max_length=AE_TITLE_MAX_CHARS)
    hosts: tuple[Annotated[Network, BeforeValidator(_network)], ...] = Field(min_length=1)
    description: str = ""

    @field_validator("ae_title")
    @classmethod
    def _valid_ae_title(cls, value: str) -> str:
        """Reject AE titles no DICOM device could send (blank, backslash, control characters)."""
        if not _AE_TITLE.fullmatch(value) or not value.strip():
            raise ValueError(
                f"ae_title must be printable ASCII without backslash and not blank, got {value!r}"
            )
        return value.strip()


class AllowList(BaseModel):
    """Schema of ``configs/dicom_allow.yaml``: a version and the callers let in."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: int = Field(ge=1)
    callers: tuple[AllowedCaller, ...] = ()

    @classmethod
    def deny_all(cls) -> Self:
        """Return the list that lets nobody in (what an absent or empty file means)."""
        return cls(version=1, callers=())

    def permits(self, ae_title: str, ip: str) -> bool:
        """Return whether ``ae_title`` connecting from ``ip`` may associate.

        An IPv4 address seen through an IPv6 socket (``::ffff:10.0.0.5``) is matched as IPv4.
        An unparseable address is never permitted.

        >>> allow = AllowList.model_validate(
        ...     {"version": 1, "callers": [{"ae_title": "PACS1", "hosts": ["10.0.0.0/24"]}]}
        ... )
        >>> allow.permits("PACS1 ", "10.0.0.7"), allow.permits("PACS1", "10.0.1.7")
        (True, False)
        """
        title = ae_title.strip()
        try:
            address = ipaddress.ip_address(ip.strip())
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(
            caller.ae_title == title and any(address in net for net in caller.hosts)
            for caller in self.callers
        )


def load_allow_list(path: Path | None) -> AllowList:
    """Read and validate the DICOM allow list; an absent or empty file allows nobody.

    Args:
        path: the YAML file, or ``None`` when the setting is unset.

    Raises:
        ValueError: the file exists but is unreadable, not YAML, or breaks the schema; the message
            names the field (``callers.0.hosts.1: …``).
    """
    if path is None or not path.exists():
        logger.warning(
            "no DICOM allow list at %s: every association is refused; %s", path, HOW_TO_ADD
        )
        return AllowList.deny_all()
    raw = read_yaml(path, what="DICOM allow list")
    if raw is None:
        logger.warning(
            "DICOM allow list %s is empty: every association is refused; %s", path, HOW_TO_ADD
        )
        return AllowList.deny_all()
    try:
        allow = AllowList.model_validate(raw)
    except ValidationError as e:
        raise ValueError(f"DICOM allow list {path} is invalid: {_describe(e)}") from None
    if not allow.callers:
        logger.warning(
            "DICOM allow list %s has no callers: every association is refused; %s", path, HOW_TO_ADD
        )
    return allow


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"])
        msg = item["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)
