"""Write a study's AI priority where the reading radiologist's worklist can see it.

Each target sits behind the :class:`FlagTarget` protocol and is chosen from :data:`FLAG_TARGETS`
by the node's ``flag_target`` (STYLE H11), so HL7 ORM, DICOM UPS or FHIR targets can be added
without touching the caller. The first target is Orthanc study metadata, read by Orthanc Explorer
2, OHIF worklists and Lua/Python hooks.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Protocol

from triage.adapters.pacs.errors import DeliveryError
from triage.adapters.pacs.nodes import FlagKind, PacsNode
from triage.adapters.pacs.orthanc import find_study_id, put_study_metadata, rest_client
from triage.core.study import hash_uid

PRIORITY_METADATA = "AIPriority"
REASONS_METADATA = "AIPriorityReasons"


class FlagTarget(Protocol):
    """Something that records a study's priority outside the engine."""

    def set_priority(self, study_uid: str, priority: str, reasons: Sequence[str]) -> None:
        """Record ``priority`` (a ``Priority`` value) and its reasons for the study.

        Raises:
            DeliveryError: the target is unreachable, refuses, or does not know the study yet.
        """


class OrthancFlagTarget:
    """Orthanc study metadata: ``AIPriority`` (the value) and ``AIPriorityReasons`` (JSON list).

    Both names must be declared in Orthanc's ``UserMetadata``, e.g.
    ``{"AIPriority": 4242, "AIPriorityReasons": 4243}``; Orthanc refuses undeclared names.
    """

    def __init__(self, node: PacsNode) -> None:
        if node.rest_url is None:
            raise ValueError(f"node {node.name!r} must have a rest_url for Orthanc flags, got none")
        self.node = node

    def set_priority(self, study_uid: str, priority: str, reasons: Sequence[str]) -> None:
        """Look the study up by StudyInstanceUID and write both metadata items.

        Raises:
            DeliveryError: the study is not stored in this Orthanc (yet), or REST fails.
        """
        with rest_client(self.node) as client:
            study_id = find_study_id(client, study_uid)
            if study_id is None:
                raise DeliveryError(
                    f"study {hash_uid(study_uid)} must be stored in node {self.node.name!r} "
                    "before its priority is flagged, got no such study"
                )
            put_study_metadata(client, study_id, PRIORITY_METADATA, priority)
            put_study_metadata(client, study_id, REASONS_METADATA, json.dumps(list(reasons)))


FLAG_TARGETS: dict[str, Callable[[PacsNode], FlagTarget]] = {
    FlagKind.ORTHANC.value: OrthancFlagTarget,
}


def make_flag_target(node: PacsNode) -> FlagTarget:
    """Return the flag target the node's ``flag_target`` names.

    Raises:
        ValueError: the node has ``flag_target: none`` or a kind with no implementation.
    """
    try:
        factory = FLAG_TARGETS[node.flag_target.value]
    except KeyError:
        raise ValueError(
            f"node {node.name!r} flag_target must be one of {sorted(FLAG_TARGETS)}, "
            f"got {node.flag_target.value!r}"
        ) from None
    return factory(node)
