"""Index templates: one source of truth, explicit ECS-style mappings, one-line registration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from driftline.connectors.elasticsearch.indices import IndexStream
from driftline.connectors.elasticsearch.mappings import STREAMS, STREAMS_BY_NAME, index_template, render_template

DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy" / "elasticsearch"


def field_mapping(template: dict, path: str) -> dict:
    node = template["template"]["mappings"]
    for part in path.split("."):
        node = node["properties"][part]
    return node


def dynamic_mapping(template: dict, path_match: str) -> dict:
    for entry in template["template"]["mappings"]["dynamic_templates"]:
        (rule,) = entry.values()
        if rule.get("path_match") == path_match:
            return rule["mapping"]
    raise AssertionError(f"no dynamic template for {path_match}")


@pytest.mark.parametrize("stream", STREAMS, ids=lambda s: s.name)
def test_deploy_copy_is_the_exported_template(stream: IndexStream):
    exported = DEPLOY_DIR / f"{stream.template_name('driftline')}.json"
    assert exported.read_text(encoding="utf-8") == render_template(stream), (
        "deploy/elasticsearch is stale: run python -m driftline.connectors.elasticsearch export-templates"
    )


def test_deploy_holds_no_template_of_an_unregistered_stream():
    assert sorted(p.name for p in DEPLOY_DIR.glob("*.json")) == sorted(f"driftline-{s.name}.json" for s in STREAMS)


@pytest.mark.parametrize("stream", STREAMS, ids=lambda s: s.name)
def test_every_stream_has_the_common_ecs_fields(stream: IndexStream):
    t = index_template(stream, "driftline")
    assert t["index_patterns"] == [f"driftline-{stream.name}-*"]
    assert field_mapping(t, "@timestamp") == {"type": "date"}
    assert field_mapping(t, "model.name")["type"] == "keyword"
    assert field_mapping(t, "model.version")["type"] == "keyword"
    assert field_mapping(t, "trace.id")["type"] == "keyword"
    assert dynamic_mapping(t, "labels.*")["type"] == "keyword"


@pytest.mark.parametrize(
    ("stream", "path", "type_"),
    [
        ("predictions", "request.id", "keyword"),
        ("predictions", "latency_ms", "float"),
        ("predictions", "prediction.label", "keyword"),
        ("predictions", "prediction.score", "double"),
        ("predictions", "features.missing", "keyword"),
        ("outcomes", "feedback.labels", "keyword"),
        ("outcomes", "feedback.timestamp", "date"),
        ("outcomes", "outcome.correct", "boolean"),
        ("drift", "drift.detector", "keyword"),
        ("drift", "drift.stream", "keyword"),
        ("drift", "drift.statistic", "double"),
        ("drift", "drift.position", "long"),
        ("alerts", "alert.severity", "keyword"),
        ("alerts", "alert.cooldown_s", "double"),
        ("deadletters", "error.message", "text"),
        ("deadletters", "error.type", "keyword"),
        ("deadletters", "kafka.topic", "keyword"),
        ("deadletters", "kafka.partition", "integer"),
        ("deadletters", "kafka.offset", "long"),
        ("deadletters", "event.original", "binary"),
    ],
)
def test_stream_fields_have_explicit_types(stream: str, path: str, type_: str):
    assert field_mapping(index_template(STREAMS_BY_NAME[stream]), path)["type"] == type_


def test_features_are_typed_by_dynamic_templates():
    t = index_template(STREAMS_BY_NAME["predictions"])
    assert dynamic_mapping(t, "features.numeric.*") == {"type": "double"}
    assert dynamic_mapping(t, "features.categorical.*")["type"] == "keyword"
    assert dynamic_mapping(t, "features.boolean.*") == {"type": "boolean"}
    assert field_mapping(t, "features.vector") == {"type": "object", "enabled": False}
    # the catch-all string rule comes last, so it cannot shadow the specific ones
    assert "strings_as_keyword" in t["template"]["mappings"]["dynamic_templates"][-1]


def test_dead_letters_never_map_unknown_fields():
    assert index_template(STREAMS_BY_NAME["deadletters"])["template"]["mappings"]["dynamic"] == "false"


def test_no_stream_pattern_matches_another_streams_indices():
    for a in STREAMS:
        for b in STREAMS:
            if a is not b:
                assert not f"driftline-{b.name}-2026.11.22".startswith(a.pattern("driftline")[:-1])


def test_a_new_stream_is_one_registration():
    metrics = IndexStream("metrics", {"metric": {"properties": {"name": {"type": "keyword"}, "value": {"type": "double"}}}})
    t = index_template(metrics, "driftline")
    assert field_mapping(t, "metric.value") == {"type": "double"}
    assert field_mapping(t, "@timestamp") == {"type": "date"}
    assert json.loads(json.dumps(t)) == t  # plain JSON, ready for PUT _index_template


def test_templates_do_not_share_mutable_state():
    t = index_template(STREAMS_BY_NAME["predictions"])
    field_mapping(t, "model.name")["type"] = "text"
    assert field_mapping(index_template(STREAMS_BY_NAME["predictions"]), "model.name")["type"] == "keyword"
