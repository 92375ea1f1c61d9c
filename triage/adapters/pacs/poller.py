"""Pull mode: find new studies on PACS nodes and bring them in through the same durable intake.

The watermark is persisted per node, so a restart neither misses nor repeats studies:
- An Orthanc node (it has ``rest_url``) is followed through its ``/changes`` log: the watermark is
  the last change sequence number, and every study that became stable after it is new — whatever
  its StudyDate (a study acquired years ago but stored today is still found).
- Any other node is queried by QIDO-RS or C-FIND for StudyDate ≥ the day of the previous poll
  (minus ``lookback_days``), minus the studies the store already holds. A study stored today with
  an older StudyDate than that window is not found by this standard path: use the on-demand
  ``triage pull STUDY_UID --from NODE`` for those.
The first poll of a node starts "from now": the existing archive is not pulled.

Retrieval by WADO-RS or C-GET lands in a temporary folder and each instance then goes through
``ingest.accept`` (spool + store) exactly like a received one; C-MOVE sends the study to the
engine's own Storage SCP, which must be in the node's list of destinations and the node in the
engine's allow-list.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydicom import dcmread
from sqlalchemy import select

from triage.adapters.pacs import dicomweb, scu
from triage.adapters.pacs.nodes import PacsNode, QueryMethod, RetrieveMethod
from triage.adapters.pacs.orthanc import last_change, stable_studies_since
from triage.core.study import hash_uid
from triage.store.db import Store
from triage.store.ingest import IngestPolicy, accept
from triage.store.schema import Study, Watermark
from triage.store.spool import Spool

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Puller:
    """Polls the nodes marked ``pull_from`` and retrieves what is new."""

    store: Store
    spool: Spool
    ingest_policy: IngestPolicy
    calling_ae: str  # the engine's own AE title (also the C-MOVE destination)
    clock: Callable[[], float]
    lookback_days: int = 1

    def poll(self, node: PacsNode) -> list[str]:
        """Find and retrieve the node's new studies; return their UIDs."""
        mark = self._watermark(node)
        if node.rest_url is not None:
            new, next_mark = self._orthanc_changes(node, mark)
        else:
            new, next_mark = self._query(node, mark)
        pulled = []
        for uid in new:
            self.retrieve(node, uid)
            pulled.append(uid)
        self._save_watermark(node, next_mark)  # only after every study was retrieved
        return pulled

    def _orthanc_changes(self, node: PacsNode, mark: str) -> tuple[list[str], str]:
        if not mark:
            return [], str(last_change(node))
        seq, uids = int(mark), []
        while True:
            page = stable_studies_since(node, since_seq=seq)
            uids += [u for u in page.study_uids if u not in uids]
            seq = page.last_seq
            if page.done:
                return uids, str(seq)

    def _query(self, node: PacsNode, mark: str) -> tuple[list[str], str]:
        today = datetime.fromtimestamp(self.clock(), UTC)
        if not mark:
            return [], today.date().isoformat()
        since = datetime.fromisoformat(mark).replace(tzinfo=UTC) - timedelta(self.lookback_days)
        with self.store.session() as s:
            known = frozenset(s.scalars(select(Study.study_uid)).all())
        if node.query is QueryMethod.QIDO:
            hits = dicomweb.qido_studies(node, since=since, exclude_uids=known)
        else:
            hits = scu.find_studies(
                node, calling_ae=self.calling_ae, since=since, exclude_uids=known
            )
        return [h.study_uid for h in hits], today.date().isoformat()

    def retrieve(self, node: PacsNode, study_uid: str) -> int:
        """Bring one study in by the node's retrieve method; return the instances received.

        Raises:
            DeliveryError: the node is unreachable or refuses; nothing is marked as pulled.
        """
        if node.retrieve is RetrieveMethod.CMOVE:
            n = scu.move_study(
                node, study_uid, calling_ae=self.calling_ae, destination_ae=self.calling_ae
            )
            logger.info("study moved", extra={"study": hash_uid(study_uid), "node": node.name})
            return n
        with tempfile.TemporaryDirectory(prefix="triage-pull-") as tmp:
            out = Path(tmp)
            if node.retrieve is RetrieveMethod.WADO:
                files = dicomweb.retrieve_study(node, study_uid, out)
            else:
                files = scu.get_study(node, study_uid, calling_ae=self.calling_ae, out_dir=out)
            for path in files:
                data = path.read_bytes()
                accept(
                    data, dcmread(path, stop_before_pixels=True), store=self.store,
                    spool=self.spool, source=f"pull:{node.name}", now=self.clock(),
                    policy=self.ingest_policy,
                )  # fmt: skip
        logger.info("study pulled", extra={"study": hash_uid(study_uid), "node": node.name})
        return len(files)

    def _watermark(self, node: PacsNode) -> str:
        with self.store.session() as s:
            row = s.get(Watermark, node.name)
            return "" if row is None else row.value

    def _save_watermark(self, node: PacsNode, value: str) -> None:
        with self.store.session() as s:
            row = s.get(Watermark, node.name)
            if row is None:
                s.add(Watermark(node=node.name, value=value, updated_at=self.clock()))
            else:
                row.value, row.updated_at = value, self.clock()
