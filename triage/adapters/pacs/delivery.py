"""Deliver the outbox: SRs to PACS nodes (C-STORE or STOW-RS) and priority flags (Orthanc, …).

Exactly once: each SR has a deterministic SOP Instance UID, and before re-sending an SR whose
earlier attempt may have arrived (a timeout, a crash between "sent" and "marked delivered"), the
node is asked whether it already has that instance (QIDO-RS when the node has DICOMweb). A flag is
an idempotent write (the same metadata value again), so it is simply retried. Every failure is
recorded on the item with its reason; after the configured attempts the item is DEAD and visible.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from triage.adapters.pacs import dicomweb, scu
from triage.adapters.pacs.errors import DeliveryError
from triage.adapters.pacs.flags import make_flag_target
from triage.adapters.pacs.nodes import PacsNode, SendMethod
from triage.core.study import hash_uid
from triage.store import outbox
from triage.store.db import Store
from triage.store.outbox import Delivery, RetryPolicy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deliverer:
    """Sends due outbox items to the nodes they name."""

    store: Store
    nodes: Mapping[str, PacsNode]
    calling_ae: str
    retry: RetryPolicy
    clock: Callable[[], float]

    def run_once(self, limit: int = 20) -> int:
        """Try every due item once; return how many were delivered."""
        done = 0
        for item in outbox.due(self.store, now=self.clock(), limit=limit):
            node = self.nodes.get(item.destination)
            try:
                if node is None:
                    raise DeliveryError(
                        f"destination must be a node in the nodes file, got {item.destination!r}"
                    )
                self._deliver(item, node)
            except (DeliveryError, OSError, ValueError) as e:
                state = outbox.failed(
                    self.store, item.id, str(e), now=self.clock(), retry=self.retry
                )
                logger.warning(
                    "delivery failed",
                    extra={"item": item.id, "kind": item.kind, "node": item.destination,
                           "study": hash_uid(item.study_uid), "state": state, "error": str(e)},
                )  # fmt: skip
                continue
            outbox.delivered(self.store, item.id, now=self.clock())
            done += 1
        return done

    def _deliver(self, item: Delivery, node: PacsNode) -> None:
        if item.kind == "sr":
            self._send_sr(item, node)
        elif item.kind == "flag":
            payload = json.loads(item.payload)
            make_flag_target(node).set_priority(
                item.study_uid, str(payload["priority"]), list(payload.get("reasons", []))
            )
        else:
            raise ValueError(f"outbox kind must be 'sr' or 'flag', got {item.kind!r}")

    def _send_sr(self, item: Delivery, node: PacsNode) -> None:
        # An earlier attempt may have arrived before it failed: never send a second copy.
        maybe_there = item.attempts > 0 and node.dicomweb_url is not None
        if maybe_there and dicomweb.instance_exists(node, item.item_key, study_uid=item.study_uid):
            return
        path = Path(item.payload)
        if node.send is SendMethod.STOW:
            result = dicomweb.stow(node, [path])
            if item.item_key not in result.referenced_sop_uids:
                raise DeliveryError(f"node {node.name!r} must accept the SR, got {result.failed}")
            return
        (sent,) = scu.store_files(node, [path], calling_ae=self.calling_ae)
        if not sent.ok:
            raise DeliveryError(
                f"node {node.name!r} must accept the SR by C-STORE, got status {sent.status}"
            )
