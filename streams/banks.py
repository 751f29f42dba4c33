"""The detect stage's detector banks, kept in memory, in the worker or in a child process of it.

The detect agent reads observation batches (:class:`~.detect.ObservationBatch`)
on the worker's event loop. Decoding them, feeding the detectors and windows
(:meth:`~.detect.DetectorBank.apply`) and encoding each bank's checkpoint is
pure CPU work, about 40% of the worker's per-request time
(``benchmarks/ingest_stages.py``). A :class:`BankKeeper` does that work for a
batch of model keys and hands back what the event loop must write: drift
events, alerts, window documents and the checkpoint text. A
:class:`DetectProcess` runs the keeper in a child process
(``DRIFTLINE_DETECT_PROCESS``), so it uses another core than the event loop,
which is left with the Kafka, Elasticsearch and table I/O.

The detectors' table stays the state of record. The keeper keeps each bank
it last returned in memory and uses it only when told to (a request without
a checkpoint); the worker tells it so only while the table still holds the
checkpoint the keeper returned *and* the worker wrote it. Whenever that is not
sure — another worker wrote the key after a rebalance, or a batch was applied
but its outputs never written (a cancelled or failed publish) — the worker
sends the table's checkpoint, and the keeper starts over from it: a batch
whose outputs were not written is applied again, not skipped as a replay.

Example:
    >>> from driftline.settings import Settings
    >>> from driftline.streams.detect import ObservationBatch
    >>> from driftline.streams.keys import ModelKey
    >>> keeper = BankKeeper(Settings(windows_enabled=False), catalog=None)
    >>> batch = ObservationBatch(ModelKey("fraud", "v1"), 0, {"j": 3_000}, [("error", 0.0, 1_000, "feedback", 7)])
    >>> [update] = keeper.apply([BankRequest("fraud|v1", 0, [batch.to_json()], NEW_BANK)], now_ms=0, session="s")
    >>> update.key, update.drift, update.holding, len(update.checkpoint) > 0
    ('fraud|v1', [], True, True)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from driftline.baselines.model import Baseline
from driftline.settings import Settings
from driftline.streams.alerts import Alert, AlertPolicy, DriftEvent
from driftline.streams.detect import DetectorBank, ObservationBatch
from driftline.streams.keys import ModelKey
from driftline.streams.metrics import MetricsConfig
from driftline.streams.tables import get_text
from driftline.streams.windows import PIPELINE_THRESHOLDS, WindowSet, WindowSettings

log = logging.getLogger(__name__)

#: The detect process's name as ``ps`` shows it.
DETECT_PROCESS_NAME = "dl-detect"

#: A request's ``checkpoint`` for a key the table has no bank for yet.
NEW_BANK = ""


class Baselines(Protocol):
    """Where a keeper finds a model version's baseline (:class:`~driftline.baselines.catalog.BaselineCatalog`)."""

    def get(self, model_name: str, model_version: str) -> Baseline | None: ...


@dataclasses.dataclass(slots=True)
class BankRequest:
    """Work for one model key: observation batches (as read from the topic) and where its bank comes from.

    ``checkpoint`` is the table's text for the key (:data:`NEW_BANK` if it
    has none), or None: use the bank the keeper returned last for the key.
    """

    key: str
    partition: int  # the observations topic's partition of the key (where its outputs belong)
    messages: list[bytes]
    checkpoint: str | None


@dataclasses.dataclass(slots=True)
class BankUpdate:
    """What one key's work gives the worker to write, in this order: documents, drift events and alerts (indexed),
    alerts (sent), then the checkpoint (the table). ``checkpoint`` None: nothing to write for the key."""

    key: str
    partition: int
    drift: list[DriftEvent]
    alerts: list[Alert]
    documents: list[tuple[str, dict[str, Any]]]  # window documents: (index stream, document with event.id)
    checkpoint: str | None
    holding: bool  # the bank holds values back or has open windows (see DetectorBank.holding)
    batches: int = 0  # observation batches applied


def window_settings(settings: Settings) -> WindowSettings:
    """The windows' configuration from driftline's settings.

    Example:
        >>> window_settings(Settings(metrics_window_s=60, positive_label="fraud")).metrics.window_ms
        60000
        >>> t = window_settings(Settings(drift_thresholds={"*": {"psi": 0.2}, "amount": {"wasserstein": 0.3}})).thresholds
        >>> t.psi, t.for_feature("amount").wasserstein, t.for_feature("age").wasserstein
        (0.2, 0.3, 0.1)
    """
    gap = settings.fairness_gap_threshold
    metrics = MetricsConfig(window_ms=int(settings.metrics_window_s * 1000), positive_label=settings.positive_label,
                            sensitive_attribute=settings.sensitive_attribute,
                            fairness_thresholds={"fpr_gap": gap, "fnr_gap": gap, "accuracy_gap": gap})
    overrides = dict(settings.drift_thresholds)
    thresholds = dataclasses.replace(PIPELINE_THRESHOLDS, **overrides.pop("*", {}), per_feature=overrides)
    return WindowSettings(size_ms=int(settings.metrics_window_s * 1000),
                          lateness_ms=int(settings.metrics_lateness_s * 1000), metrics=metrics, thresholds=thresholds)


class BankKeeper:
    """Applies observation batches to the model keys' banks and encodes their checkpoints; keeps the banks.

    Parameters
    ----------
    settings
        Partitions, idle timeout, windows and alert cooldown come from here.
    catalog
        The baselines (None: no baseline comparisons).
    """

    def __init__(self, settings: Settings, catalog: Baselines | None) -> None:
        self.settings = settings
        self.catalog = catalog
        self.policy = AlertPolicy(cooldown_s=settings.alert_cooldown_s)
        self.window_settings = window_settings(settings)
        self.windows_enabled = settings.windows_enabled
        self.banks: dict[str, DetectorBank] = {}

    def new_bank(self, key: str) -> DetectorBank:
        model_key = ModelKey.decode(key)
        return DetectorBank(model_key, partitions=self.settings.topic_partitions,
                            idle_ms=int(self.settings.detect_idle_s * 1000),
                            windows=WindowSet(model_key, self.window_settings) if self.windows_enabled else None)

    def bank_from_checkpoint(self, text: str) -> DetectorBank:
        """A bank from its checkpoint, with this keeper's window settings."""
        bank = DetectorBank.loads(text)
        windows = getattr(bank, "windows", None)
        if not self.windows_enabled:
            bank.windows = None
        elif windows is None:
            bank.windows = WindowSet(bank.key, self.window_settings)
        else:
            windows.settings = self.window_settings
        return bank

    def bank(self, key: str, checkpoint: str | None) -> DetectorBank:
        if checkpoint is None:
            try:
                return self.banks[key]
            except KeyError:
                raise KeyError(f"no bank kept for {key!r}: the request must carry its checkpoint") from None
        bank = self.new_bank(key) if checkpoint == NEW_BANK else self.bank_from_checkpoint(checkpoint)
        self.banks[key] = bank
        return bank

    def baseline_of(self, bank: DetectorBank) -> Baseline | None:
        return None if self.catalog is None else self.catalog.get(bank.key.model, bank.key.version)

    def apply(self, requests: Sequence[BankRequest], now_ms: int, session: str) -> list[BankUpdate]:
        """Each request's batches applied to its key's bank, in order; one update per request."""
        updates = []
        for request in requests:
            bank = self.bank(request.key, request.checkpoint)
            bank.resume(session, now_ms)
            baseline = self.baseline_of(bank)
            drift: list[DriftEvent] = []
            for message in request.messages:
                drift += bank.apply(ObservationBatch.from_json(message), now_ms, baseline)
            updates.append(self._update(request, bank, drift, len(request.messages)))
        return updates

    def release(self, requests: Sequence[BankRequest], now_ms: int, session: str) -> list[BankUpdate]:
        """Values held back for partitions gone silent released (requests without messages); an update has a
        checkpoint only if there is something to write (drift, window documents, or nothing held any more)."""
        updates = []
        for request in requests:
            bank = self.bank(request.key, request.checkpoint)
            bank.resume(session, now_ms)
            drift = bank.release(now_ms, self.baseline_of(bank))
            if drift or bank.outbox or not bank.holding:
                updates.append(self._update(request, bank, drift, 0))
            else:
                updates.append(BankUpdate(request.key, request.partition, [], [], [], None, True))
        return updates

    def _update(self, request: BankRequest, bank: DetectorBank, drift: list[DriftEvent], batches: int) -> BankUpdate:
        # the alert state is part of the bank: decide the alerts before the checkpoint is encoded
        alerts = [alert for event in drift if (alert := self.policy.consider(event, bank.alert_state)) is not None]
        documents = bank.take_documents()
        return BankUpdate(request.key, request.partition, drift, alerts, documents, bank.dumps(), bank.holding,
                          batches)


# --- the keeper in a child process ---------------------------------------------------------------------------------

_keeper: BankKeeper | None = None  # the child's keeper (set by _start_child)


def _start_child(settings: Settings, parent_pid: int, baselines: bool) -> None:
    """The child's initializer: logging, the collector's thresholds, the baselines, a watch on the parent."""
    global _keeper
    import signal

    from driftline.baselines.catalog import BaselineCatalog
    from driftline.streams.collector import tune_garbage_collector
    from driftline.streams.process_name import name_this_process

    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")
    # Ctrl-C and SIGTERM reach the whole process group: the worker finishes its batch with us, then stops us
    # (a child gone first would crash the worker's last batch); without a worker we exit by ourselves
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    name_this_process(DETECT_PROCESS_NAME)
    tune_garbage_collector()
    catalog: BaselineCatalog | None = BaselineCatalog(settings) if baselines else None
    try:
        if catalog is not None:
            catalog.start()  # loaded before the first batch, as the worker's own catalog
    except Exception as exc:  # noqa: BLE001 - baselines are optional: say why, run without them
        log.error("detect process: baselines not loaded from %s: %s", settings.baselines_topic, exc)
        catalog = None
    _keeper = BankKeeper(settings, catalog)
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), name="parent-watch", daemon=True).start()
    log.info("detect process started")


def _exit_with_parent(parent_pid: int, every_s: float = 1.0) -> None:
    """A worker killed with SIGKILL leaves no detect process behind (its pool's queues would keep it waiting)."""
    while os.getppid() == parent_pid:
        time.sleep(every_s)
    os._exit(0)


def _in_child(method: str, requests: list[BankRequest], now_ms: int, session: str) -> list[BankUpdate]:
    """``BankKeeper.apply`` or ``release`` (``method``) on the child's keeper."""
    assert _keeper is not None, "the detect process was not initialized"
    return getattr(_keeper, method)(requests, now_ms, session)


class DetectProcess:
    """A :class:`BankKeeper` in a child process of the worker, called from the event loop.

    The child is started with ``spawn`` (the worker has threads and open
    sockets that must not be forked) as the only process of a
    ``ProcessPoolExecutor``; requests and updates are pickled through its
    pipes (observation batches as the bytes read from Kafka, checkpoints as
    text). The child loads the baselines itself and follows their topic, as
    the worker does. It exits when the worker stops it, and by itself when
    its parent is gone. A child that dies makes the next call raise
    (``BrokenProcessPool``), which stops the worker: a restart resumes from
    the committed offsets and the table.

    Example:
        >>> # keeper = DetectProcess(settings); keeper.start()
        >>> # updates = await keeper.apply(requests, now_ms, session)
        >>> # keeper.stop()
    """

    def __init__(self, settings: Settings, baselines: bool = True) -> None:
        self.settings = settings
        self.baselines = baselines  # False: no baselines (no broker needed)
        self.pool: concurrent.futures.ProcessPoolExecutor | None = None

    def start(self) -> None:
        self.pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_start_child,
            initargs=(self.settings, os.getpid(), self.baselines))
        self.pool.submit(int).result()  # start the child now (spawn + imports), not on the first batch

    def pid(self) -> int:
        """The child's process id."""
        if self.pool is None:
            raise RuntimeError("the detect process is not started")
        return self.pool.submit(os.getpid).result()

    async def apply(self, requests: list[BankRequest], now_ms: int, session: str) -> list[BankUpdate]:
        return await self._call("apply", requests, now_ms, session)

    async def release(self, requests: list[BankRequest], now_ms: int, session: str) -> list[BankUpdate]:
        return await self._call("release", requests, now_ms, session)

    async def _call(self, method: str, *args: Any) -> list[BankUpdate]:
        if self.pool is None:
            raise RuntimeError("the detect process is not started")
        return await asyncio.get_running_loop().run_in_executor(self.pool, _in_child, method, *args)

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


class LocalKeeper:
    """A :class:`BankKeeper` on the worker's event loop, with :class:`DetectProcess`'s interface
    (``DRIFTLINE_DETECT_PROCESS=false``)."""

    def __init__(self, settings: Settings, catalog: Baselines | None) -> None:
        self.keeper = BankKeeper(settings, catalog)

    def start(self) -> None:
        pass

    async def apply(self, requests: list[BankRequest], now_ms: int, session: str) -> list[BankUpdate]:
        return self.keeper.apply(requests, now_ms, session)

    async def release(self, requests: list[BankRequest], now_ms: int, session: str) -> list[BankUpdate]:
        return self.keeper.release(requests, now_ms, session)

    def stop(self) -> None:
        pass


def checkpoint_request(table: Mapping[str, Any], kept: dict[str, Any], key: str) -> str | None:
    """What a request for ``key`` carries as its bank: None (the keeper's own) if the table still holds what the
    keeper returned last and the worker wrote (``kept[key]``), else the table's text (:data:`NEW_BANK` if none).

    The key's entry in ``kept`` is taken out: it is put back only once the worker has written the update.

    Example:
        >>> table, kept = {"m|1": "abc"}, {"m|1": "abc"}
        >>> checkpoint_request(table, kept, "m|1"), kept
        (None, {})
        >>> checkpoint_request(table, kept, "m|1"), checkpoint_request(table, kept, "m|2")
        ('abc', '')
    """
    stored = table.get(key)  # the checkpoint, or the head of its parts
    written = kept.pop(key, None)
    if not stored:
        return NEW_BANK
    if written is not None and (written is stored or written == stored):
        return None
    return get_text(table, key)


__all__ = ["DETECT_PROCESS_NAME", "BankKeeper", "BankRequest", "BankUpdate", "DetectProcess", "LocalKeeper", "NEW_BANK",
           "checkpoint_request", "window_settings"]
