"""The Elasticsearch sink: index templates, daily indices, idempotent bulk writes.

* :mod:`.indices` — :class:`IndexStream`, time-based index names, deterministic ids.
* :mod:`.mappings` — the index templates (source of truth) and :data:`STREAMS`.
* :mod:`.sink` — :class:`ElasticsearchSink` and its small types.

Example:
    >>> from driftline.settings import Settings
    >>> async def index_batch(settings: Settings, docs: list[dict]) -> FlushResult:
    ...     async with ElasticsearchSink.from_settings(settings) as sink:   # start(): templates
    ...         for offset, doc in enumerate(docs):
    ...             sink.add("predictions", doc, topic="driftline.predictions", partition=0, offset=offset)
    ...         result = await sink.flush("driftline.predictions", 0)       # or SinkBackpressure
    ...         # result.rejected -> dead letters; then commit result.commit_offset
    ...         return result
"""

from __future__ import annotations

from driftline.connectors.elasticsearch.indices import (
    IndexStream,
    InvalidDocument,
    document_id,
    event_time,
    index_name,
)
from driftline.connectors.elasticsearch.mappings import STREAMS, STREAMS_BY_NAME, TEMPLATE_VERSION, index_template
from driftline.connectors.elasticsearch.sink import (
    ElasticsearchSink,
    FlushResult,
    RejectedDocument,
    RetryPolicy,
    SinkBackpressure,
    SinkBatch,
    SinkError,
    TemplateError,
)

__all__ = [
    "STREAMS",
    "STREAMS_BY_NAME",
    "TEMPLATE_VERSION",
    "ElasticsearchSink",
    "FlushResult",
    "IndexStream",
    "InvalidDocument",
    "RejectedDocument",
    "RetryPolicy",
    "SinkBackpressure",
    "SinkBatch",
    "SinkError",
    "TemplateError",
    "document_id",
    "event_time",
    "index_name",
    "index_template",
]
