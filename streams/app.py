"""driftline's Faust application: intake, ingest (join) and detect, with Elasticsearch as the sink.

An intake and two agents, each processing batches (Faust's per-event path costs
far more than the work per event, so everything per record happens in plain
Python over a batch):

``intake`` — :mod:`.intake`, a child process by default
    reads the predictions and feedback topics (co-partitioned by request id)
    with a batch consumer, in event-time order, decodes, validates and
    pseudonymizes them (:mod:`.normalize`) and forwards one message of
    canonical events and dead letters per partition batch to the intake topic.

``ingest`` — on the intake topic
    index the dead letters (and send them to the dead-letter topic); join
    labels to predictions in event time (:mod:`.join`, on the ``join``
    table); index predictions (sampled per model), joined outcomes and expired
    entries; send per-model-key *observation batches* (each prediction's and
    outcome's window record, from which the detect stage reads errors,
    scores, latencies and numeric features) to the observations topic, keyed
    by model key — the repartition step that puts each detector in exactly
    one worker.

``detect`` — on the observations topic
    feed each model key's :class:`~.detect.DetectorBank` (River detectors,
    replay-safe positions, alert cooldowns; the ``detectors`` table); each
    alarm becomes a drift event and, through the cooldown policy, an alert;
    both are indexed, alerts also go to the alerts topic and the webhook.
    The banks are kept, fed and checkpointed by :mod:`.banks`, in a child
    process by default; the agent does the I/O.

Delivery: a batch is acknowledged (its offsets become committable) only after
Elasticsearch acknowledged its documents and Kafka its output records; its
table changes are written only then too (:class:`~.staging.StagedStore`).
While Elasticsearch is unavailable the stage retries with back-off and
commits nothing. Replays are harmless: documents have deterministic ids,
observation batches carry their source offsets, the join keeps tombstones.

Example:
    >>> from driftline.settings import Settings
    >>> app = create_app(Settings(pseudonymization_key="k" * 32, app_id="doc-example"))
    >>> sorted(app.agents)  # doctest: +ELLIPSIS
    ['driftline.streams.app.detect', 'driftline.streams.app.ingest']
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import faust
import numpy as np
from datasketches import kll_floats_sketch
from faust.types import EventT
from mode import CrashingSupervisor

from driftline.baselines.catalog import BaselineCatalog
from driftline.baselines.model import Baseline
from driftline.connectors.codec import DecodeError, make_codec
from driftline.connectors.elasticsearch import ElasticsearchSink, SinkBackpressure, SinkError
from driftline.connectors.elasticsearch.sink import SinkBatch
from driftline.connectors.kafka_admin import committed_offsets
from driftline.connectors.webhook import WebhookNotifier
from driftline.settings import Settings
from driftline.streams.banks import BankRequest, BankUpdate, DetectProcess, LocalKeeper, checkpoint_request
from driftline.streams.batching import take_batches
from driftline.streams.changelog import ChangelogProducer
from driftline.streams.clock import BacklogClock
from driftline.streams.detect import (
    JOIN_CLOCK,
    PREDICTION_CLOCK,
    ModelKey,
    ObservationBatch,
    WindowRecord,
    split_batch,
)
from driftline.streams.faust_app import DriftlineApp
from driftline.streams.intake import CycleResult, IntakeBatch, IntakeService, intake_topic
from driftline.streams.join import LabelJoiner
from driftline.streams.skew import SkewValidator, anomaly_document
from driftline.streams.slices import parse_slices, slices_of
from driftline.streams.windows import (
    OUTCOME,
    PREDICTION,
    outcome_record,
    prediction_record,
)
from driftline.streams.normalize import DeadLetterRecord, EventKind, NormalizedEvent, Normalizer
from driftline.streams.offsets import OffsetGuard, strict_commits
from driftline.streams.staging import StagedStore
from driftline.streams.tables import PartitionTable, partition_scope, put_text

log = logging.getLogger(__name__)

#: Ingest batches written to Elasticsearch at once: one is computed while up to this many are indexed.
MAX_BATCHES_IN_FLIGHT = 2
#: Ingest batches not yet complete (indexed, their records and table writes acknowledged, sealed, in order): a batch
#: indexed waits for its acknowledgements and seal without holding the next batches' writes back (the seals took
#: 5 s of a 30 s latency run, all on the way to Elasticsearch while they counted among the batches in flight).
MAX_BATCHES_PENDING = 4

#: Longest pause between two attempts to reach Elasticsearch while it is down.
MAX_BACKOFF_S = 30.0


def sampled(request_id: str, rate: float) -> bool:
    """Deterministic sampling by request id: a replay makes the same decision.

    Example:
        >>> sampled("r-1", 1.0), sampled("r-1", 0.0)
        (True, False)
    """
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rate


def broker_url(bootstrap: str) -> str:
    """Faust's broker URL for a bootstrap list.

    Example:
        >>> broker_url("a:9092,b:9092")
        'kafka://a:9092;kafka://b:9092'
    """
    return ";".join(f"kafka://{server}" for server in bootstrap.split(","))


async def flush_until_indexed(sink: ElasticsearchSink, batch: SinkBatch) -> Any:
    """Write one batch (from ``sink.take``), again and again with back-off for as long as Elasticsearch is down.

    The batch is kept until it is written, and nothing is acknowledged
    meanwhile, so nothing is committed that was not indexed.
    """
    delay = 0.5
    while True:
        try:
            return await sink.write(batch)
        except SinkBackpressure as exc:
            wait = min(MAX_BACKOFF_S, max(delay, exc.retry_after or 0.0))
            log.warning("Elasticsearch unavailable (%s); retrying %s[%d] in %.1f s", exc.reason, batch.topic,
                        batch.partition, wait)
            await asyncio.sleep(wait)
            delay = min(MAX_BACKOFF_S, delay * 2)


class Pipeline:
    """The state and the per-batch logic of both agents, given an app and settings."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        partitions = settings.topic_partitions
        # the intake's batches of both input topics (co-partitioned by request id): see streams/intake.py
        self.input_topic = app.topic(intake_topic(settings), key_type=bytes, value_type=bytes, key_serializer="raw",
                                     value_serializer="raw", partitions=partitions, internal=True)
        self.observations_topic = app.topic(f"{settings.app_id}.observations", key_type=bytes, value_type=bytes,
                                            key_serializer="raw", value_serializer="raw", partitions=partitions,
                                            internal=True)
        self.deadletter_topic = app.topic(settings.deadletter_topic, key_type=bytes, value_type=bytes,
                                          key_serializer="raw", value_serializer="raw")
        self.alerts_topic = app.topic(settings.alerts_topic, key_type=bytes, value_type=bytes,
                                      key_serializer="raw", value_serializer="raw")
        self.join_table = self._table("join", partitions, faust.Schema(key_type=str, key_serializer="raw",
                                                                        value_serializer="json"))
        self.detector_table = self._table("detectors", partitions, faust.Schema(
            key_type=str, key_serializer="raw", value_serializer="json"))
        # changelog records through confluent-kafka, not Faust's producer (a few hundred µs each): streams/changelog.py
        self.changelog = ChangelogProducer(settings.kafka_client_config())
        self.join_table.changelog_producer = self.detector_table.changelog_producer = self.changelog
        self.window_ms = int(settings.label_window_s * 1000)
        self.dead_letter_codec = make_codec("dead_letter")
        self.normalizer: Normalizer | None = None
        self.sink: ElasticsearchSink | None = None
        self.webhook: WebhookNotifier | None = None
        self.counts: dict[str, int] = defaultdict(int)
        self.guards: dict[str, OffsetGuard] = {}  # by stage
        self.seconds: dict[str, float] = defaultdict(float)  # time spent per phase, for the periodic report
        self.latency_ms = kll_floats_sketch(200)  # event-to-indexed latency, for the periodic report
        self._sink_lock = asyncio.Lock()
        self._in_flight: deque[asyncio.Future[None]] = deque()  # ingest batches not complete, oldest first
        self._indexing: deque[asyncio.Future[None]] = deque()  # of those, their Elasticsearch writes, oldest first
        self._join_stores: dict[int, StagedStore] = {}  # per partition, the latest batch's join writes
        self._detect_lock = asyncio.Lock()
        self.waiting: dict[str, int] = {}  # model keys whose banks hold values or open windows -> their partition
        self.session = uuid.uuid4().hex  # this worker process; banks reset their idle clocks on a new one
        self.partition_events: dict[int, EventT] = {}  # the latest observation event per partition (for the store)
        self.catalog = BaselineCatalog(settings)
        self._catalog_started = False
        # the detectors' banks, kept in memory by the keeper (a child process by default: streams/banks.py);
        # per model key, the checkpoint the keeper returned and this worker wrote (see checkpoint_request)
        self.keeper = DetectProcess(settings) if settings.detect_process else LocalKeeper(settings, self.catalog)
        self._keeper_started = False
        self._kept: dict[str, Any] = {}
        # the detectors' idle timeouts count only time the worker is caught up (see streams/clock.py)
        self.clock = BacklogClock(("intake", "ingest", "detect"), quiet_s=2 * settings.batch_within_s + 1.0,
                                  start_ms=int(time.time() * 1000))
        self.validators: dict[str, tuple[Baseline, SkewValidator]] = {}
        self.slice_specs = parse_slices(settings.slices)
        self.windows_enabled = settings.windows_enabled

    def _table(self, name: str, partitions: int, schema: faust.Schema) -> PartitionTable:
        table = PartitionTable(self.app, name=name, partitions=partitions, schema=schema,
                               beacon=self.app.tables.beacon)
        return self.app.tables.add(table)  # type: ignore[return-value]

    # --- lifecycle --------------------------------------------------------------

    def build_normalizer(self) -> Normalizer:
        key = self.settings.pseudonymization_key
        return Normalizer.from_settings(self.settings, key.get_secret_value() if key else None)

    async def start_sink(self) -> ElasticsearchSink:
        """The Elasticsearch sink, templates installed; waits (with back-off) until Elasticsearch answers."""
        async with self._sink_lock:
            if self.sink is None:
                self.sink = await self._new_sink()
            return self.sink

    async def _new_sink(self) -> ElasticsearchSink:
        # two bulk requests in flight per write: the server indexes one while the next is on its way
        sink = ElasticsearchSink.from_settings(self.settings, prefix=self.settings.es_index_prefix, concurrency=2)
        delay = 0.5
        while True:
            try:
                await sink.start()
                break
            except SinkBackpressure as exc:
                log.warning("Elasticsearch not reachable yet (%s); retrying in %.1f s", exc.reason, delay)
                await asyncio.sleep(delay)
                delay = min(MAX_BACKOFF_S, delay * 2)
        return sink

    async def start_catalog(self) -> None:
        """Load the baselines and follow their topic (on a thread); a worker without baselines still runs."""
        if not self._catalog_started:
            self._catalog_started = True
            try:
                await asyncio.to_thread(self.catalog.start)
            except Exception as exc:  # noqa: BLE001 - baselines are optional: say why, run without them
                log.error("baselines not loaded from %s: %s", self.settings.baselines_topic, exc)
            else:
                log.info("%d baselines loaded from %s", len(self.catalog), self.settings.baselines_topic)

    def validator(self, model: str, version: str) -> SkewValidator | None:
        """The schema-skew validator of a model version's current baseline, or None without one."""
        baseline = self.catalog.get(model, version)
        if baseline is None:
            return None
        cached = self.validators.get(baseline.key)
        if cached is None or cached[0] is not baseline:
            cached = self.validators[baseline.key] = (baseline, SkewValidator(baseline))
        return cached[1]

    async def start_webhook(self) -> None:
        if self.settings.webhook_url and self.webhook is None:
            self.webhook = WebhookNotifier(self.settings.webhook_url)
            await self.webhook.start()

    async def stop(self) -> None:
        """Close what the stages opened (the worker calls this once its agents stopped); safe to call twice."""
        self.catalog.stop()
        await asyncio.to_thread(self.keeper.stop)
        self.changelog.close()
        if self.sink is not None:
            await self.sink.close()
            self.sink = None
        if self.webhook is not None:
            await self.webhook.close()
            self.webhook = None
        log.info("driftline pipeline closed")

    def offset_guard(self, stage: str) -> OffsetGuard:
        """The guard that keeps a stage's input in offset order (its counts go to the report)."""
        settings = self.settings

        async def committed(topic: str) -> dict[int, int | None]:
            return await asyncio.get_running_loop().run_in_executor(
                None, committed_offsets, settings, settings.app_id, topic, settings.topic_partitions)

        guard = self.guards[stage] = OffsetGuard(self.app.consumer, committed)
        return guard

    # --- ingest -----------------------------------------------------------------

    def sample_rate(self, model: str) -> float:
        return self.settings.model_sample_rates.get(model, self.settings.prediction_sample_rate)

    def model_keys(self, model: str, version: str, document: Mapping[str, Any]) -> list[ModelKey]:
        """The keys one event feeds: its model version, one per configured slice attribute
        (``slice_keys``: one slice per value) and one per configured slice it matches (``slices``)."""
        keys = [ModelKey(model, version)]
        labels = document.get("labels") or {}
        for attribute in self.settings.slice_keys:
            value = labels.get(attribute)
            if value is not None:
                keys.append(ModelKey(model, version, {attribute: str(value)}))
        for spec in slices_of(document, self.slice_specs, include_all=False):
            key = ModelKey(model, version, spec.labels)
            if key not in keys:
                keys.append(key)
        return keys

    async def ingest(self, events: Sequence[EventT]) -> asyncio.Future[None]:
        """Normalize, join and forward one batch of intake batches (any partitions); index it in the background.

        Returns when the batch is computed and its Elasticsearch writes have
        started, with the future of its completion: indexed, its output
        records and table writes acknowledged. Acknowledge the batch's events
        only when that future is done. The next batches are computed and
        written while this one is indexed (reading the join state through
        this batch's staged writes), so the sink is not idle while the worker
        computes or seals; table writes are committed in batch order.
        """
        assert self.normalizer is not None and self.sink is not None
        t0 = time.perf_counter()
        now_ms = int(time.time() * 1000)
        deliveries: list[Any] = []
        touched: set[tuple[str, int]] = set()
        by_partition: dict[int, PartitionInput] = {}
        for event in events:
            partition = event.message.partition
            part = by_partition.get(partition)
            if part is None:
                part = by_partition[partition] = PartitionInput(event)
            part.last_event = event
            try:
                batch = IntakeBatch.decode(event.value)
            except DecodeError as exc:  # not written by an intake: keep it as a dead letter, go on
                part.dead_letters.append(DeadLetterRecord(
                    event.value, event.key, f"not an intake batch: {exc.reason}", "decode_error",
                    event.message.topic, partition, event.message.offset, now_ms, stage="intake"))
                continue
            if batch.offsets:  # raw records (an intake without a normalizer, or an older worker's): normalize here
                records = batch.records()
                normalized, dead_letters = self.normalizer.normalize_batch(records, now_ms)
                sent_ms = [r.timestamp_ms for r in records if r.timestamp_ms is not None]
            else:
                normalized, dead_letters, sent_ms = batch.normalized()
            part.events += normalized
            part.dead_letters += dead_letters
            part.sent_ms += sent_ms
            part.records += len(batch)
        n_records = sum(part.records for part in by_partition.values())
        # a batch of batch_size records, or of one intake batch per partition, means the worker is working through
        # a backlog (streams/clock.py) until the batch is indexed: waiting for Elasticsearch is part of the work, and
        # the partitions queued behind this batch are not silent meanwhile
        full = n_records >= self.settings.batch_size or len(events) >= self.settings.topic_partitions
        self.clock.begin("ingest", full)
        try:
            staged = await self._prepare(by_partition, now_ms, deliveries, touched)
            self.seconds["ingest.compute"] += time.perf_counter() - t0
            started = time.perf_counter()
            while self._in_flight and (self._in_flight[0].done() or len(self._in_flight) >= MAX_BATCHES_PENDING):
                await self._in_flight.popleft()  # raises what a failed batch raised: the agent stops
            while self._indexing and (self._indexing[0].done() or len(self._indexing) >= MAX_BATCHES_IN_FLIGHT):
                await self._indexing.popleft()  # raises what a batch that failed before it was indexed raised
            self.seconds["ingest.wait_for_sink"] += time.perf_counter() - started
        except BaseException:
            self.clock.end("ingest", full)
            raise
        batches = [self.sink.take(topic, partition) for topic, partition in sorted(touched)]
        previous = self._in_flight[-1] if self._in_flight else None
        indexed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        completion = asyncio.ensure_future(self._complete(batches, deliveries, staged, by_partition, previous,
                                                          indexed))
        completion.add_done_callback(lambda _: self.clock.end("ingest", full))
        completion.add_done_callback(lambda done: _pass_on_failure(done, indexed))
        self._in_flight.append(completion)
        self._indexing.append(indexed)
        self.counts["ingested"] += n_records
        self.counts["intake_batches"] += len(events)
        return completion

    def observe_latency(self, parts: Iterable[PartitionInput]) -> None:
        """Event-to-indexed latency: from each record's Kafka timestamp (when the producer sent it) to now."""
        sent_ms = [ms for part in parts for ms in part.sent_ms]
        if sent_ms:  # one call for the batch: a sketch update per value costs about as much as joining the record
            self.latency_ms.update(time.time() * 1000 - np.asarray(sent_ms, dtype=np.float64))

    def latency_report(self) -> dict[str, float]:
        """Median and 99th percentile (ms) of the event-to-indexed latency since the worker started."""
        if self.latency_ms.is_empty():
            return {}
        p50, p99 = self.latency_ms.get_quantiles([0.5, 0.99])
        return {"p50": round(p50), "p99": round(p99), "n": self.latency_ms.n}

    def on_intake_cycle(self, result: CycleResult) -> None:
        """The intake read a batch: a full read means the input has a backlog."""
        if result.full:
            self.clock.begin("intake", full=True)
            self.clock.end("intake", full=True)
        self.seconds["intake.wait_acks"] += result.waited_s

    async def _prepare(self, by_partition: Mapping[int, PartitionInput], now_ms: int,
                       deliveries: list[Any], touched: set[tuple[str, int]]) -> list[tuple[int, EventT, StagedStore]]:
        """Join the events, buffer their documents and dead letters in the sink, send their observations."""
        assert self.sink is not None
        staged: list[tuple[int, EventT, StagedStore]] = []
        for partition, part in sorted(by_partition.items()):
            for dead in part.dead_letters:
                await self._dead_letter(dead, deliveries)
                touched.add((dead.source_topic, partition))
            # over the previous batch's writes, which may not be committed yet
            below = self._join_stores.get(partition)
            store = self._join_stores[partition] = StagedStore(self.join_table if below is None else below)
            staged.append((partition, part.last_event, store))
            prepared = self.prepare_partition(partition, part.events, store)
            for stream, document, topic, offset in prepared.documents:
                self.sink.add(stream, document, topic=topic, partition=partition, offset=offset)
                touched.add((topic, partition))
            for batch in prepared.batches:
                for part in split_batch(batch):  # each message well below Kafka's size limit
                    deliveries.append(await self.observations_topic.send(key=batch.key.encode().encode(),
                                                                         value=part.to_json()))
                    self.counts["observation_batches_sent"] += 1
        return staged

    def prepare_partition(self, partition: int, normalized: Sequence[NormalizedEvent],
                          store: StagedStore) -> PreparedPartition:
        """Join one partition's normalized events (join writes go to ``store``); no I/O.

        Returns the documents to index (predictions sampled per model, joined
        outcomes, anomalies) and one observation batch per model key: each
        prediction's and outcome's window record, from which the detect stage
        reads the detectors' values too.
        """
        prepared = PreparedPartition()
        documents = prepared.documents
        predictions = [e for e in normalized if e.kind is EventKind.PREDICTION]
        feedbacks = [e for e in normalized if e.kind is EventKind.FEEDBACK]
        joiner = LabelJoiner(store, window_ms=self.window_ms, namespace=str(partition))
        result = joiner.join_batch([_with_time(e) for e in predictions], [_with_time(e) for e in feedbacks])

        rows: dict[ModelKey, list[WindowRecord]] = defaultdict(list)
        keys_of: dict[tuple[str, str], list[ModelKey]] = {}  # without slices, the keys depend on the model only
        sliced = bool(self.settings.slice_keys or self.slice_specs)
        for event in predictions:
            doc = event.document
            model = doc["model"]
            keep = sampled(event.request_id, self.sample_rate(model["name"]))
            if keep:
                documents.append(("predictions", doc, event.topic, event.offset))
            validator = self.validator(model["name"], model["version"]) if self.windows_enabled else None
            anomalies = validator.validate(doc) if validator is not None else []
            if anomalies:
                self.counts["anomalies"] += len(anomalies)
                if keep:
                    for anomaly in anomalies:
                        documents.append(("anomalies", anomaly_document(anomaly, model["name"], model["version"],
                                                                        event.timestamp_ms, event.request_id,
                                                                        doc.get("labels")),
                                          event.topic, event.offset))
            row = (PREDICTION, prediction_record(doc, anomalies), event.timestamp_ms, event.topic, event.offset)
            for key in self._keys_of(model, doc, keys_of, sliced):
                rows[key].append(row)
        # an outcome is attributed to the record that completed it (the label, usually)
        completing = {e.request_id: e for e in predictions}
        completing.update({e.request_id: e for e in feedbacks})
        for outcome in result.outcomes:
            doc = _indexable(outcome.document)
            source = completing[outcome.id]
            if sampled(outcome.id, self.settings.outcome_sample_rate):
                documents.append(("outcomes", doc, source.topic, source.offset))
            model = doc["model"]
            # ordered by when the outcome became known: the later of prediction and label time
            predicted_ms = _ms(outcome.document)
            known_ms = max(predicted_ms, predicted_ms + int((doc.get("feedback") or {}).get("delay_ms") or 0))
            row = (OUTCOME, outcome_record(doc), known_ms, source.topic, source.offset)
            for key in self._keys_of(model, doc, keys_of, sliced):
                rows[key].append(row)
        for expired in result.expired:
            self.counts[f"expired_{expired.kind}"] += 1
        total = result.total()
        self.counts["joined"] += len(result.outcomes)
        self.counts["duplicates"] += total.duplicates

        marks = {}
        if predictions:
            marks[PREDICTION_CLOCK] = max(e.timestamp_ms for e in predictions)
        if result.known_ms is not None:  # errors come in order of when they became known: see JoinClock.known_ms
            marks[JOIN_CLOCK] = result.known_ms
        prepared.batches = [ObservationBatch(key, partition, marks, [], key_rows) for key, key_rows in rows.items()]
        return prepared

    def _keys_of(self, model: Mapping[str, str], document: Mapping[str, Any],
                 cache: dict[tuple[str, str], list[ModelKey]], sliced: bool) -> list[ModelKey]:
        if sliced:
            return self.model_keys(model["name"], model["version"], document)
        name_version = (model["name"], model["version"])
        keys = cache.get(name_version)
        if keys is None:
            keys = cache[name_version] = self.model_keys(model["name"], model["version"], document)
        return keys

    async def _complete(self, batches: list[SinkBatch], deliveries: list[Any],
                        staged: list[tuple[int, EventT, StagedStore]],
                        by_partition: Mapping[int, PartitionInput],
                        previous: asyncio.Future[None] | None, indexed: asyncio.Future[None]) -> None:
        """Index a prepared batch (then set ``indexed``) and wait for its output records; then, once the previous
        batch is complete, commit and seal its table writes (in batch order)."""
        assert self.sink is not None
        t1 = time.perf_counter()
        # one bulk stream for the whole batch: per topic-partition requests are tiny at low load, and a local
        # server pays per request (benchmarks/pipeline_throughput.py, the latency run)
        combined = SinkBatch.combine(batches, self.input_topic.get_topic_name(), -1)
        results = [await flush_until_indexed(self.sink, combined)] if combined.size else []
        self.counts["indexed"] += sum(result.indexed for result in results)
        refused = {await self._rejected(r, deliveries) for result in results for r in result.rejected} - {None}
        for topic, partition in sorted(refused):  # one flush per partition for the index stage's dead letters
            await flush_until_indexed(self.sink, self.sink.take(topic, partition))
        t2 = time.perf_counter()
        indexed.set_result(None)
        self.observe_latency(by_partition.values())
        if deliveries:
            await asyncio.gather(*deliveries)
        if previous is not None:
            await previous  # raises if it failed: then this batch is not acknowledged either
        t3 = time.perf_counter()
        for partition, event, store in staged:
            with partition_scope(partition, event):
                self.counts["table_writes"] += store.commit()
            if self._join_stores.get(partition) is store:  # no later batch reads through it
                del self._join_stores[partition]
        t4 = time.perf_counter()
        await self.seal(self.join_table, [(partition, event) for partition, event, _ in staged])
        self.seconds["ingest.seal"] += time.perf_counter() - t4
        self.seconds["ingest.elasticsearch"] += t2 - t1
        self.seconds["ingest.kafka_acks"] += t3 - t2
        self.seconds["ingest.table_writes"] += t4 - t3

    async def _dead_letter(self, dead: DeadLetterRecord, deliveries: list[Any]) -> None:
        assert self.sink is not None
        self.counts[f"dead_letter.{dead.error_type}"] += 1
        self.sink.add("deadletters", dead.to_document(), topic=dead.source_topic, partition=dead.source_partition,
                      offset=dead.source_offset)
        value = self.dead_letter_codec.encode(dead.to_avro())
        deliveries.append(await self.deadletter_topic.send(key=dead.raw_key, value=value))

    async def _rejected(self, rejected: Any, deliveries: list[Any]) -> tuple[str, int] | None:
        """A document Elasticsearch refused (mapping error) becomes a dead letter of the index stage.

        Returns the (topic, partition) whose sink batch now holds it, for the caller to flush.
        """
        self.counts["rejected_by_elasticsearch"] += 1
        if rejected.stream == "deadletters":
            log.error("Elasticsearch rejected a dead letter (%s): %s", rejected.error_type, rejected.reason)
            return None
        raw = json.dumps(rejected.document, default=str).encode()
        dead = DeadLetterRecord(raw, None, f"Elasticsearch rejected the {rejected.stream} document: {rejected.reason}",
                                "mapping_error", rejected.topic, rejected.partition, rejected.offset or 0,
                                int(time.time() * 1000), stage="index")
        await self._dead_letter(dead, deliveries)
        return (dead.source_topic, dead.source_partition)

    async def seal(self, table: PartitionTable, partitions: Sequence[tuple[int, Any]]) -> None:
        """Make the batch's table writes durable, then seal each changelog partition written (see :mod:`.tables`).

        Returns only when the seals are acknowledged too, so a batch is never
        acknowledged (and its offsets never committed) before its state is.
        """
        if not partitions:
            return
        await self.flush_producer()
        for partition, event in partitions:
            table.seal(partition, event)
        await self.flush_producer()

    async def flush_producer(self) -> None:
        """Wait until every message Faust buffered is acknowledged by Kafka.

        Faust's ``Producer.flush`` gives up draining its own buffer after 0.1 s
        without progress and returns with messages still buffered; this loops
        until the buffer is empty, then waits for the client's acknowledgements.
        """
        producer = self.app.producer
        buffer = getattr(producer, "buffer", None)
        while buffer is not None and buffer.size:
            await buffer.flush()
        await producer.flush()
        await self.changelog.flush()

    # --- detect -----------------------------------------------------------------

    async def start_keeper(self) -> None:
        """Start the bank keeper (in its child process, ``DRIFTLINE_DETECT_PROCESS``): once, for the detect agent."""
        if not self._keeper_started:
            self._keeper_started = True
            await asyncio.to_thread(self.keeper.start)

    def _request(self, key: str, partition: int, messages: list[bytes]) -> BankRequest:
        return BankRequest(key, partition, messages, checkpoint_request(self.detector_table, self._kept, key))

    async def detect(self, events: Sequence[EventT]) -> None:
        """Feed one batch of observation batches to the detectors of their model keys (in the bank keeper)."""
        by_key: dict[tuple[int, str], list[bytes]] = defaultdict(list)
        for event in events:
            by_key[(event.message.partition, event.key.decode())].append(event.value)
            self.partition_events[event.message.partition] = event
        now_ms = self.clock.tick()
        async with self._detect_lock:
            requests = [self._request(key, partition, messages) for (partition, key), messages in by_key.items()]
            started = time.perf_counter()
            updates = await self.keeper.apply(requests, now_ms, self.session)
            published = time.perf_counter()
            self.seconds["detect.apply"] += published - started
            await self._publish(updates)
            self.seconds["detect.publish"] += time.perf_counter() - published  # the seal included

    async def release_idle(self) -> None:
        """Release values held back for partitions that went silent (end of a burst, idle models)."""
        now_ms = self.clock.tick()
        async with self._detect_lock:
            requests = [self._request(key, partition, []) for key, partition in list(self.waiting.items())
                        if self.detector_table.get(key)]
            if not requests:
                return
            updates = await self.keeper.release(requests, now_ms, self.session)
            for update in updates:
                if update.checkpoint is None:  # nothing to write: the keeper's bank is still the table's
                    self._kept[update.key] = self.detector_table.get(update.key)
            await self._publish([update for update in updates if update.checkpoint is not None])

    async def _publish(self, updates: list[BankUpdate]) -> None:
        """Index window documents, drift events and alerts, send alerts, then checkpoint the banks (in that order)."""
        assert self.sink is not None
        topic = self.observations_topic.get_topic_name()
        alerts = []
        touched: set[int] = set()
        for update in updates:
            partition = update.partition
            self.counts["observation_batches"] += update.batches
            for stream, document in update.documents:
                self.counts[f"{stream}_documents"] += 1
                self.sink.add(stream, document, topic=topic, partition=partition, doc_id=document["event"]["id"])
                touched.add(partition)
            for drift in update.drift:
                self.counts["drift_events"] += 1
                self.sink.add("drift", drift.document(), topic=topic, partition=partition, doc_id=drift.id)
                touched.add(partition)
            for alert in update.alerts:
                self.sink.add("alerts", alert.document(), topic=topic, partition=partition, doc_id=alert.id)
                alerts.append(alert)
        for partition in sorted(touched):
            await flush_until_indexed(self.sink, self.sink.take(topic, partition))
        deliveries = [await self.alerts_topic.send(key=a.drift.alert_key.encode(), value=a.to_json()) for a in alerts]
        if deliveries:
            await asyncio.gather(*deliveries)
        for alert in alerts:
            self.counts["alerts"] += 1
            log.warning("ALERT %s", alert.message)
            if self.webhook is not None:
                await self.webhook.deliver(alert.document(), key=alert.id)
        for update in updates:
            assert update.checkpoint is not None
            with partition_scope(update.partition, self.partition_events.get(update.partition)):
                # the keeper's bank is the table's again: the next request for the key may leave the checkpoint out
                self._kept[update.key] = put_text(self.detector_table, update.key, update.checkpoint)
            if update.holding:
                self.waiting[update.key] = update.partition
            else:
                self.waiting.pop(update.key, None)
        partitions = sorted({update.partition for update in updates})
        started = time.perf_counter()
        await self.seal(self.detector_table, [(p, self.partition_events.get(p)) for p in partitions])
        self.seconds["detect.seal"] += time.perf_counter() - started


@dataclasses.dataclass
class PartitionInput:
    """One ingest batch's input from one partition: its intake batches' events and dead letters."""

    last_event: EventT  # the latest intake message of the partition (where its table writes belong)
    events: list[NormalizedEvent] = dataclasses.field(default_factory=list)
    dead_letters: list[DeadLetterRecord] = dataclasses.field(default_factory=list)
    sent_ms: list[int] = dataclasses.field(default_factory=list)  # the records' Kafka timestamps, for the latency
    records: int = 0


@dataclasses.dataclass
class PreparedPartition:
    """What one partition's events become on the ingest path (:meth:`Pipeline.prepare_partition`)."""

    #: (index stream, document, source topic, source offset)
    documents: list[tuple[str, dict[str, Any], str, int]] = dataclasses.field(default_factory=list)
    #: one per model key, before splitting to Kafka's size limit
    batches: list[ObservationBatch] = dataclasses.field(default_factory=list)


def _pass_on_failure(done: asyncio.Future[None], indexed: asyncio.Future[None]) -> None:
    """A batch that ended before it was indexed (failed, cancelled) ends its ``indexed`` future the same way."""
    if indexed.done():
        return
    if done.cancelled():
        indexed.cancel()
    else:
        indexed.set_exception(done.exception() or RuntimeError("the ingest batch ended before it was indexed"))


def _with_time(event: NormalizedEvent) -> dict[str, Any]:
    return {**event.document, "timestamp_ms": event.timestamp_ms}


def _ms(document: Mapping[str, Any]) -> int:
    return int(document.get("timestamp_ms") or 0)


def _indexable(document: Mapping[str, Any]) -> dict[str, Any]:
    """The document without the pipeline's own bookkeeping fields."""
    return {k: v for k, v in document.items() if k != "timestamp_ms"}


def faust_settings(settings: Settings) -> dict[str, Any]:
    """Faust configuration from driftline's settings."""
    conf: dict[str, Any] = {
        "broker": broker_url(settings.kafka_bootstrap),
        "store": settings.store,
        "datadir": str(settings.worker_dir / settings.app_id),
        "topic_partitions": settings.topic_partitions,
        "topic_replication_factor": settings.topic_replication_factor,
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        "web_enabled": settings.worker_web_port is not None,
        "table_standby_replicas": 0,
    }
    if settings.worker_web_port is not None:
        conf["web_port"] = settings.worker_web_port
    if settings.kafka_session_timeout_ms is not None:
        conf["broker_session_timeout"] = settings.kafka_session_timeout_ms / 1000
        conf["broker_heartbeat_interval"] = max(0.25, settings.kafka_session_timeout_ms / 6000)
    if settings.kafka_sasl_mechanism and settings.kafka_sasl_username and settings.kafka_sasl_password:
        import ssl

        ssl_context = ssl.create_default_context(cafile=str(settings.kafka_ssl_ca_location) if settings.kafka_ssl_ca_location else None)
        conf["broker_credentials"] = faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=ssl_context if settings.kafka_security_protocol == "SASL_SSL" else None,
        )
    elif settings.kafka_security_protocol == "SSL":
        import ssl

        conf["broker_credentials"] = ssl.create_default_context(
            cafile=str(settings.kafka_ssl_ca_location) if settings.kafka_ssl_ca_location else None
        )
    return conf


def create_app(settings: Settings) -> faust.App:
    """The Faust app for these settings, with both agents registered."""
    app = DriftlineApp(settings.app_id, fetch_max_wait_ms=settings.fetch_max_wait_ms, **faust_settings(settings))
    pipeline = Pipeline(app, settings)
    app.driftline_pipeline = pipeline  # type: ignore[attr-defined]
    # once the agents stopped: the detect process, the changelog producer, the Elasticsearch and webhook clients
    app.after_stop(pipeline.stop)
    batch, within = settings.batch_size, settings.batch_within_s

    # a bug in a stage stops the worker (restart resumes from the committed offsets) rather than
    # restarting the agent past a batch it never acknowledged
    # the input topics are read by the intake's batch consumer, which forwards one message per partition batch
    @app.service
    class Intake(IntakeService):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(settings, on_cycle=pipeline.on_intake_cycle, **kwargs)

    # the stages acknowledge by hand, in offset order: see streams/offsets.py for why Faust's rules are not enough
    strict_commits({pipeline.input_topic.get_topic_name(), pipeline.observations_topic.get_topic_name()})

    @app.agent(pipeline.input_topic, name="driftline.streams.app.ingest", supervisor_strategy=CrashingSupervisor)
    async def ingest(stream: faust.StreamT) -> None:
        pipeline.normalizer = pipeline.normalizer or pipeline.build_normalizer()
        await pipeline.start_catalog()
        await pipeline.start_sink()
        # each event is an intake batch of up to batch_size records: take what is there, up to one per partition
        # (Faust may deliver many batches of one partition in a row; more per take lets one partition run far ahead
        # of the others in event time, and the detect stage holds its values back until the others catch up)
        guard = pipeline.offset_guard("ingest")
        async for events in take_batches(stream, settings.topic_partitions, settings.intake_within_s, guard):
            # acknowledged once indexed, while the next batch is computed; a failure stops the worker
            events.completion = await pipeline.ingest(events)

    @app.agent(pipeline.observations_topic, name="driftline.streams.app.detect", supervisor_strategy=CrashingSupervisor)
    async def detect(stream: faust.StreamT) -> None:
        await pipeline.start_catalog()
        await pipeline.start_sink()
        await pipeline.start_webhook()
        await pipeline.start_keeper()
        # eager: what queued up while the last batch was detected goes at once (see take_batches)
        async for events in take_batches(stream, batch, within, pipeline.offset_guard("detect"), eager=True):
            with pipeline.clock.batch("detect", full=len(events) >= batch):
                await pipeline.detect(events)

    @app.timer(interval=max(1.0, settings.detect_idle_s / 3))
    async def release_idle() -> None:
        if pipeline.sink is not None and pipeline.waiting:
            await pipeline.release_idle()

    @app.timer(interval=settings.report_interval_s)
    async def report() -> None:
        if pipeline.counts:
            counts = dict(pipeline.counts) | {f"offsets.{stage}.{k}": v for stage, guard in pipeline.guards.items()
                                              for k, v in guard.counts.items() if v}
            log.info("driftline counts: %s; seconds: %s; latency ms: %s", dict(sorted(counts.items())),
                     {k: round(v, 1) for k, v in sorted(pipeline.seconds.items())}, pipeline.latency_report())

    return app
