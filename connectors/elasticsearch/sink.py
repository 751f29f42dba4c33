"""The Elasticsearch sink: batches per Kafka partition, bulk writes, back-pressure.

The lifecycle follows Quix Streams' batching sinks:

1. :meth:`ElasticsearchSink.start` installs the index templates (idempotent).
2. :meth:`ElasticsearchSink.add` buffers a document into the batch of its
   source topic-partition. Documents that cannot be placed (no usable
   ``@timestamp``, no id, not JSON) are kept as rejections, not raised.
3. :meth:`ElasticsearchSink.flush` writes one partition's batch with
   ``elasticsearch.helpers.async_streaming_bulk`` and always drops the batch.
   It returns a :class:`FlushResult` (indexed count and the documents
   Elasticsearch refused, with the reason, for the dead letters); the caller
   then commits the offsets. If Elasticsearch stays unavailable after the
   retries it raises :class:`SinkBackpressure`: the caller must not commit,
   should pause the partition for ``retry_after`` seconds and replay from the
   last committed offset. Document ids are deterministic, so the replay
   overwrites what the failed flush had already written.
4. :meth:`ElasticsearchSink.close` drops unflushed batches (their offsets were
   never committed, so they are replayed) and closes an owned client.

Retries: one layer, in the sink. A bulk pass sends every unresolved document
once; documents that got 429 or 5xx, or were cut off by a connection error or
timeout, are sent again after ``initial_backoff * 2**(n-1)`` seconds (capped at
``max_backoff``), at most ``max_retries`` times. The transport's own retries are
switched off for the sink's requests so that this bound is the real one (the
helper's ``max_retries`` covers 429/5xx but not connection errors, and nesting
both would multiply the waits). Per-document 4xx answers (mapping errors) are
rejections and are never retried.

Example:
    >>> import asyncio
    >>> from elasticsearch import AsyncElasticsearch
    >>> async def main():
    ...     client = AsyncElasticsearch("http://127.0.0.1:9")  # nothing listens
    ...     sink = ElasticsearchSink(client, install_templates=False,
    ...                              retry=RetryPolicy(max_retries=1, initial_backoff=0.01))
    ...     await sink.start()
    ...     sink.add("drift", {"@timestamp": "2026-11-22T10:00:00Z", "drift": {"detector": "adwin"}},
    ...              topic="driftline.predictions", partition=0, offset=41, doc_id="adwin-m1-7")
    ...     sink.add("drift", {"drift": {"detector": "adwin"}}, topic="driftline.predictions", partition=0, offset=42, doc_id="x")
    ...     try:
    ...         await sink.flush("driftline.predictions", 0)
    ...     except SinkBackpressure as exc:
    ...         print(type(exc).__name__, exc.pending, "pending, retry after", exc.retry_after, "s")
    ...     finally:
    ...         await sink.close(); await client.close()
    >>> asyncio.run(main())
    SinkBackpressure 1 pending, retry after 0.02 s
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable

from elasticsearch import ApiError, AsyncElasticsearch, TransportError
from elasticsearch.helpers import async_streaming_bulk

from driftline.connectors.elasticsearch.indices import (
    IndexStream,
    InvalidDocument,
    check_id,
    check_prefix,
    document_id,
    event_time,
    index_name,
)
from driftline.connectors.elasticsearch.mappings import STREAMS, index_template

if TYPE_CHECKING:
    from driftline.settings import Settings

__all__ = [
    "ElasticsearchSink",
    "FlushResult",
    "RejectedDocument",
    "RetryPolicy",
    "SinkBackpressure",
    "SinkBatch",
    "SinkError",
    "TemplateError",
]

logger = logging.getLogger(__name__)

#: Statuses worth retrying: too many requests, and server-side failures.
RETRY_STATUSES: tuple[int, ...] = (429, 500, 502, 503, 504)


# --- errors -------------------------------------------------------------------------


class SinkError(Exception):
    """The sink could not do its job; ``reason`` says why. Do not commit offsets."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SinkBackpressure(SinkError):
    """Elasticsearch stayed unavailable after the retries; try again later.

    The batch is dropped. The caller must not commit its offsets; it pauses
    the partition for ``retry_after`` seconds and replays from the last
    committed offset (ids are deterministic, so nothing is duplicated).

    Example:
        >>> exc = SinkBackpressure("connection refused", retry_after=4.0, topic="t", partition=0, pending=10)
        >>> exc.retry_after, exc.pending
        (4.0, 10)
    """

    def __init__(
        self, reason: str, *, retry_after: float, topic: str | None = None, partition: int | None = None, pending: int = 0
    ) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.topic = topic
        self.partition = partition
        self.pending = pending


class TemplateError(SinkError):
    """Elasticsearch refused an index template (a deployment bug, not transient)."""


# --- small types --------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently the sink retries.

    Parameters
    ----------
    max_retries
        Retries after the first attempt; 0 = fail at the first transient error.
    initial_backoff
        Seconds before the first retry; doubled for each further one.
    max_backoff
        Upper bound of one wait.
    retry_on_status
        HTTP statuses (per document or per request) that are retried.

    Example:
        >>> p = RetryPolicy(max_retries=3, initial_backoff=0.5)
        >>> [p.backoff(n) for n in (1, 2, 3)], p.total_wait
        ([0.5, 1.0, 2.0], 3.5)
    """

    max_retries: int = 5
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    retry_on_status: tuple[int, ...] = RETRY_STATUSES

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.initial_backoff < 0 or self.max_backoff < 0:
            raise ValueError("retry settings must not be negative")

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        return min(self.max_backoff, self.initial_backoff * 2 ** max(0, retry - 1))

    @property
    def total_wait(self) -> float:
        """The longest a flush sleeps before giving up (request time not included)."""
        return sum(self.backoff(n) for n in range(1, self.max_retries + 1))


@dataclass(frozen=True)
class RejectedDocument:
    """A document that was not indexed and will not be retried, with the reason.

    ``status`` is Elasticsearch's per-document HTTP status (400 for a mapping
    error), or None when the sink refused the document before sending it.
    The pipeline turns these into dead letters.

    Example:
        >>> r = RejectedDocument("predictions", "driftline-predictions-2026.11.22", "r-1", {}, 400,
        ...                      "document_parsing_exception", "failed to parse field [latency_ms]", "t", 0, 7)
        >>> r.error_type, r.offset
        ('document_parsing_exception', 7)
    """

    stream: str
    index: str | None
    doc_id: str | None
    document: Mapping[str, Any]
    status: int | None
    error_type: str
    reason: str
    topic: str
    partition: int
    offset: int | None


@dataclass
class SinkBatch:
    """The documents buffered for one Kafka topic-partition.

    ``size`` counts every added document (rejected ones too); ``nbytes`` is the
    JSON size of the documents to send; ``offset`` is the highest source
    offset added (None if the caller gave none).

    Example:
        >>> b = SinkBatch("driftline.predictions", 3)
        >>> (b.topic, b.partition, b.size, b.nbytes)
        ('driftline.predictions', 3, 0, 0)
    """

    topic: str
    partition: int
    actions: list[_Action] = field(default_factory=list)  # to send, in add() order
    rejected: list[RejectedDocument] = field(default_factory=list)
    nbytes: int = 0
    offset: int | None = None

    @property
    def size(self) -> int:
        return len(self.actions) + len(self.rejected)

    @classmethod
    def combine(cls, batches: Sequence[SinkBatch], topic: str, partition: int) -> SinkBatch:
        """One batch of several (one bulk stream instead of many small requests); its ``offset`` is None.

        Rejections still name each document's own topic-partition.

        Example:
            >>> a, b = SinkBatch("t", 0, nbytes=10), SinkBatch("t", 1, nbytes=5)
            >>> c = SinkBatch.combine([a, b], "t", -1)
            >>> (c.partition, c.nbytes, c.offset)
            (-1, 15, None)
        """
        combined = cls(topic, partition)
        for batch in batches:
            combined.actions += batch.actions
            combined.rejected += batch.rejected
            combined.nbytes += batch.nbytes
        return combined

    def __len__(self) -> int:
        return self.size


@dataclass(frozen=True)
class FlushResult:
    """What a successful flush did; commit ``commit_offset`` after it.

    ``indexed + superseded + len(rejected)`` equals the batch size.
    ``superseded`` counts documents replaced in the same batch by a later one
    with the same index and id (only the last was sent).

    Example:
        >>> r = FlushResult("t", 0, indexed=10, rejected=(), superseded=0, offset=41, attempts=1, seconds=0.01)
        >>> r.commit_offset, r.ok
        (42, True)
    """

    topic: str
    partition: int
    indexed: int
    rejected: tuple[RejectedDocument, ...]
    superseded: int
    offset: int | None
    attempts: int
    seconds: float

    @property
    def commit_offset(self) -> int | None:
        """The Kafka offset to commit: the next one to read."""
        return None if self.offset is None else self.offset + 1

    @property
    def ok(self) -> bool:
        """True when every document was indexed."""
        return not self.rejected


@dataclass(slots=True)
class _Action:
    stream: str
    index: str
    doc_id: str
    source: bytes
    document: Mapping[str, Any]
    offset: int | None
    topic: str | None = None  # the source record's, for a rejection (a combined batch spans topic-partitions)
    partition: int | None = None

    def bulk_action(self) -> dict[str, Any]:
        # The source is already JSON: the helper sends bytes through unchanged.
        return {"_op_type": "index", "_index": self.index, "_id": self.doc_id, "_source": self.source}


# --- the sink -------------------------------------------------------------------------------


class ElasticsearchSink:
    """Bulk-indexes driftline's documents into daily, templated indices.

    Parameters
    ----------
    client
        An ``AsyncElasticsearch`` client. Use :meth:`from_settings` to build
        one from :class:`driftline.settings.Settings` (the sink then owns it).
    prefix
        First part of index and template names (``driftline``).
    streams
        The registered streams (:data:`~driftline.connectors.elasticsearch.mappings.STREAMS`).
    retry
        The :class:`RetryPolicy`.
    chunk_size, max_chunk_bytes
        Documents and bytes per bulk request.
    concurrency
        Bulk requests in flight per flush.
    request_timeout
        Seconds per request; a timeout is retried like a connection error.
    refresh
        Passed to the bulk API (``"wait_for"`` in tests; False in production).
    install_templates
        False when templates are managed outside (``deploy/elasticsearch``).
    owns_client
        Close ``client`` in :meth:`close`.

    Example:
        >>> from elasticsearch import AsyncElasticsearch
        >>> sink = ElasticsearchSink(AsyncElasticsearch("http://127.0.0.1:9200"), prefix="driftline")
        >>> sink.index_pattern("predictions")
        'driftline-predictions-*'
    """

    def __init__(
        self,
        client: AsyncElasticsearch,
        *,
        prefix: str = "driftline",
        streams: Iterable[IndexStream] = STREAMS,
        retry: RetryPolicy = RetryPolicy(),
        chunk_size: int = 500,
        max_chunk_bytes: int = 10 * 1024 * 1024,
        concurrency: int = 1,
        request_timeout: float = 30.0,
        refresh: bool | str = False,
        install_templates: bool = True,
        owns_client: bool = False,
    ) -> None:
        if chunk_size < 1 or max_chunk_bytes < 1 or concurrency < 1:
            raise ValueError("chunk_size, max_chunk_bytes and concurrency must be positive")
        self.prefix = check_prefix(prefix)
        self.streams: dict[str, IndexStream] = {}
        for stream in streams:
            if stream.name in self.streams:
                raise ValueError(f"stream {stream.name!r} registered twice")
            self.streams[stream.name] = stream
        self.retry = retry
        self.chunk_size = chunk_size
        self.max_chunk_bytes = max_chunk_bytes
        self.concurrency = concurrency
        self.refresh = refresh
        self.install_templates = install_templates
        self._client = client
        self._owns_client = owns_client
        # The sink is the only retry layer: switch the transport's retries off.
        self._requests = client.options(
            request_timeout=request_timeout, max_retries=0, retry_on_status=(), retry_on_timeout=False
        )
        self._json_default = _json_default_for(client)
        self._batches: dict[tuple[str, int], SinkBatch] = {}
        self._started = False
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> ElasticsearchSink:
        """A sink with its own client built from ``settings.es_client_options()``.

        Example:
            >>> from driftline.settings import Settings
            >>> sink = ElasticsearchSink.from_settings(Settings(es_url="http://127.0.0.1:9200"))
            >>> sink.prefix
            'driftline'
        """
        client = AsyncElasticsearch(**settings.es_client_options())
        return cls(client, owns_client=True, **kwargs)

    # --- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Install (or overwrite) one index template per stream.

        Retries transient failures like a flush; raises :class:`SinkBackpressure`
        if Elasticsearch stays unavailable, :class:`TemplateError` if it refuses
        a template.
        """
        if self._closed:
            raise RuntimeError("the sink is closed")
        if self.install_templates:
            for stream in self.streams.values():
                await self._put_template(stream)
        self._started = True

    async def close(self) -> None:
        """Drop unflushed batches and close the client if the sink owns it."""
        self._batches.clear()
        self._closed = True
        if self._owns_client:
            await self._client.close()

    async def __aenter__(self) -> ElasticsearchSink:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- buffering ------------------------------------------------------------------

    def add(
        self,
        stream: str,
        document: Mapping[str, Any],
        *,
        topic: str,
        partition: int,
        offset: int | None = None,
        doc_id: str | None = None,
    ) -> None:
        """Buffer ``document`` for ``stream`` into the batch of (``topic``, ``partition``).

        The index comes from the document's ``@timestamp``; the id is ``doc_id``
        or, if None, derived from the stream's ``id_fields``. A document with
        no usable timestamp or id, or that is not JSON, becomes a
        :class:`RejectedDocument` of the next flush (``status`` None).
        ``bytes`` values are written as base64 (what ``binary`` fields expect).

        Raises ``ValueError`` for an unknown stream, or a stream without
        ``id_fields`` given no ``doc_id`` (programming errors, not bad data).

        Example:
            >>> from elasticsearch import AsyncElasticsearch
            >>> sink = ElasticsearchSink(AsyncElasticsearch("http://127.0.0.1:9200"))
            >>> sink.add("alerts", {"@timestamp": 0, "alert": {"severity": "high"}},
            ...          topic="driftline.alerts", partition=0, offset=5, doc_id="rule-1/m/7")
            >>> b = sink.batch("driftline.alerts", 0)
            >>> b.size, b.actions[0].index, b.offset
            (1, 'driftline-alerts-1970.01.01', 5)
        """
        if self._closed:
            raise RuntimeError("the sink is closed")
        spec = self.streams.get(stream)
        if spec is None:
            raise ValueError(f"unknown stream {stream!r}; registered: {', '.join(self.streams)}")
        if doc_id is None and not spec.id_fields:
            raise ValueError(f"stream {stream!r} has no id fields: pass doc_id (a deterministic id)")
        key = (topic, partition)
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = SinkBatch(topic, partition)
        if offset is not None and (batch.offset is None or offset > batch.offset):
            batch.offset = offset
        index: str | None = None
        try:
            index = index_name(self.prefix, stream, event_time(document))
            doc_id = check_id(doc_id) if doc_id is not None else document_id(document, spec.id_fields)
            source = self._dumps(document)
        except InvalidDocument as exc:
            batch.rejected.append(
                RejectedDocument(stream, index, doc_id, document, None, exc.error_type, exc.reason, topic, partition, offset)
            )
            return
        batch.actions.append(_Action(stream, index, doc_id, source, document, offset, topic, partition))
        batch.nbytes += len(source)

    def batch(self, topic: str, partition: int) -> SinkBatch | None:
        """The pending batch of a topic-partition, if any (read it, do not change it)."""
        return self._batches.get((topic, partition))

    @property
    def batches(self) -> Mapping[tuple[str, int], SinkBatch]:
        """All pending batches by (topic, partition)."""
        return dict(self._batches)

    def drop(self, topic: str, partition: int) -> int:
        """Forget a partition's batch without writing it (on revocation); return its size."""
        batch = self._batches.pop((topic, partition), None)
        return 0 if batch is None else batch.size

    def index_pattern(self, stream: str) -> str:
        """The index pattern of a stream, for searches: ``<prefix>-<stream>-*``."""
        return self.streams[stream].pattern(self.prefix)

    # --- writing ----------------------------------------------------------------------

    async def flush(self, topic: str, partition: int) -> FlushResult:
        """Write the batch of (``topic``, ``partition``) and drop it, whatever happens.

        Returns a :class:`FlushResult` once every document is either indexed
        or rejected by Elasticsearch (4xx) or by the sink; commit the offsets
        then. Raises :class:`SinkBackpressure` if documents are still
        unresolved after the retries, :class:`SinkError` if Elasticsearch
        refuses the request itself (authentication, permissions): do not
        commit in either case.
        """
        return await self.write(self.take(topic, partition))

    def take(self, topic: str, partition: int) -> SinkBatch:
        """Remove and return the pending batch of (``topic``, ``partition``) (an empty one if none).

        Documents added afterwards go to a new batch. With :meth:`write`, the
        caller owns the batch and can write it again after a
        :class:`SinkBackpressure` (ids are deterministic: a document written
        twice is one document).
        """
        return self._batches.pop((topic, partition), None) or SinkBatch(topic, partition)

    async def write(self, batch: SinkBatch) -> FlushResult:
        """Write a batch from :meth:`take`; on failure it is unchanged and can be written again.

        Returns and raises like :meth:`flush`.
        """
        if not self._started:
            raise RuntimeError("call start() before flush(): an index created before its template gets wrong mappings")
        topic, partition = batch.topic, batch.partition
        began = time.monotonic()
        indexed, rejected, superseded, attempts = await self._write(batch)
        return FlushResult(
            topic=topic,
            partition=partition,
            indexed=indexed,
            rejected=tuple(rejected),
            superseded=superseded,
            offset=batch.offset,
            attempts=attempts,
            seconds=time.monotonic() - began,
        )

    async def _write(self, batch: SinkBatch) -> tuple[int, list[RejectedDocument], int, int]:
        # Last write wins within a batch, as it would in Elasticsearch; sending
        # one action per (index, id) also makes every response item match one
        # pending document.
        pending: dict[tuple[str, str], _Action] = {}
        for action in batch.actions:
            pending[(action.index, action.doc_id)] = action
        superseded = len(batch.actions) - len(pending)
        rejected = list(batch.rejected)
        indexed = 0
        attempts = 0
        while pending:
            attempts += 1
            outcome = await self._bulk_pass(list(pending.values()))
            for key in outcome.indexed:
                del pending[key]
                indexed += 1
            for key, info in outcome.rejected:
                action = pending.pop(key)
                rejected.append(_rejection(action, info, batch.topic, batch.partition))
            if outcome.fatal is not None:
                raise SinkError(f"Elasticsearch refused the bulk request: {outcome.fatal}")
            if not pending:
                break
            if attempts > self.retry.max_retries:
                raise SinkBackpressure(
                    f"{len(pending)} document(s) not indexed after {attempts} attempt(s): {outcome.transient}",
                    retry_after=self.retry.backoff(attempts),
                    topic=batch.topic,
                    partition=batch.partition,
                    pending=len(pending),
                )
            delay = self.retry.backoff(attempts)
            logger.warning(
                "elasticsearch sink %s[%d]: %d document(s) unresolved (%s); retry %d/%d in %.2fs",
                batch.topic, batch.partition, len(pending), outcome.transient, attempts, self.retry.max_retries, delay,
            )  # fmt: skip
            await asyncio.sleep(delay)
        return indexed, rejected, superseded, attempts

    async def _bulk_pass(self, actions: Sequence[_Action]) -> _PassOutcome:
        """Send each action once (``concurrency`` streams of chunks) and sort the answers."""
        outcome = _PassOutcome()
        slices = [actions[i :: self.concurrency] for i in range(min(self.concurrency, len(actions)))]
        results = await asyncio.gather(*(self._stream(part, outcome) for part in slices), return_exceptions=True)
        for result in results:
            if isinstance(result, TransportError):  # connection refused or reset, timeout
                outcome.transient = f"{type(result).__name__}: {result}"
            elif isinstance(result, BaseException):
                raise result
        return outcome

    async def _stream(self, actions: Sequence[_Action], outcome: _PassOutcome) -> None:
        by_key = {(a.index, a.doc_id): a for a in actions}
        kwargs: dict[str, Any] = {"refresh": self.refresh} if self.refresh else {}
        async for ok, item in async_streaming_bulk(
            self._requests,
            (a.bulk_action() for a in actions),
            chunk_size=self.chunk_size,
            max_chunk_bytes=self.max_chunk_bytes,
            raise_on_error=False,  # per-document errors come back as items
            raise_on_exception=False,  # a failed request comes back as failed items
            max_retries=0,  # retries are the sink's (see the module docstring)
            yield_ok=True,
            **kwargs,
        ):
            info = next(iter(item.values()))
            key = _match(by_key, info)
            if ok:
                outcome.indexed.append(key)
                continue
            status = int(info.get("status") or 500)
            if status in self.retry.retry_on_status:
                outcome.transient = f"status {status}: {_reason(info)}"
            elif "exception" in info:  # the whole request was refused (401, 403, 413 ...)
                outcome.fatal = f"status {status}: {_reason(info)}"
            else:
                outcome.rejected.append((key, info))

    async def _put_template(self, stream: IndexStream) -> None:
        name = stream.template_name(self.prefix)
        body = index_template(stream, self.prefix)
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._requests.indices.put_index_template(name=name, **body)
                return
            except ApiError as exc:
                if exc.status_code not in self.retry.retry_on_status:
                    raise TemplateError(f"index template {name} refused: {exc}") from exc
                error = f"status {exc.status_code}: {exc}"
            except TransportError as exc:
                error = f"{type(exc).__name__}: {exc}"
            if attempt > self.retry.max_retries:
                raise SinkBackpressure(
                    f"cannot install index template {name}: {error}", retry_after=self.retry.backoff(attempt)
                )
            await asyncio.sleep(self.retry.backoff(attempt))

    def _dumps(self, document: Mapping[str, Any]) -> bytes:
        try:
            return json.dumps(
                document, default=self._json_default, ensure_ascii=False, separators=(",", ":"), allow_nan=False
            ).encode("utf-8")
        except (TypeError, ValueError, RecursionError, TransportError) as exc:
            # allow_nan=False: NaN/Infinity are not JSON and Elasticsearch rejects them.
            raise InvalidDocument("serialization_error", f"document is not valid JSON: {exc}") from None


@dataclass
class _PassOutcome:
    indexed: list[tuple[str, str]] = field(default_factory=list)
    rejected: list[tuple[tuple[str, str], dict[str, Any]]] = field(default_factory=list)
    transient: str | None = None
    fatal: str | None = None


def _match(by_key: Mapping[tuple[str, str], _Action], info: Mapping[str, Any]) -> tuple[str, str]:
    """The pending key of a response item: by (index, id), else by id alone.

    The fallback covers a cluster answering with another index name than the
    one requested (an alias); ids are unique within one pass per index.
    """
    key = (info.get("_index"), info.get("_id"))
    if key in by_key:
        return key  # type: ignore[return-value]
    for candidate in by_key:
        if candidate[1] == info.get("_id"):
            return candidate
    raise SinkError(f"bulk response item matches no document sent: {dict(info)!r:.200}")


def _reason(info: Mapping[str, Any]) -> str:
    error = info.get("error")
    if isinstance(error, Mapping):
        reason = f"{error.get('type', 'error')}: {error.get('reason', '')}"
        cause = error.get("caused_by")
        if isinstance(cause, Mapping) and cause.get("reason"):
            reason += f" (caused by {cause.get('type', 'error')}: {cause['reason']})"
        return reason
    return str(error)


def _rejection(action: _Action, info: Mapping[str, Any], topic: str, partition: int) -> RejectedDocument:
    if action.topic is not None and action.partition is not None:
        topic, partition = action.topic, action.partition
    error = info.get("error")
    error_type = str(error.get("type", "error")) if isinstance(error, Mapping) else "error"
    return RejectedDocument(
        stream=action.stream,
        index=action.index,
        doc_id=action.doc_id,
        document=action.document,
        status=int(info.get("status") or 0) or None,
        error_type=error_type,
        reason=_reason(info),
        topic=topic,
        partition=partition,
        offset=action.offset,
    )


def _json_default_for(client: AsyncElasticsearch) -> Callable[[Any], Any]:
    """The client's JSON fallbacks (datetime, UUID, Decimal, numpy ...), plus bytes as base64."""
    serializer = client.transport.serializers.get_serializer("application/json")
    fallback: Callable[[Any], Any] = getattr(serializer, "default", _no_default)

    def default(value: Any) -> Any:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return base64.b64encode(bytes(value)).decode("ascii")
        return fallback(value)

    return default


def _no_default(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
