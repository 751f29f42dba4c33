"""Baselines on the compacted topic, against the session's Kafka broker."""

from __future__ import annotations

import time

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from driftline.baselines.catalog import (
    BaselineCatalog,
    decode_baseline,
    encode_baseline,
    example_baseline,
    publish_baseline,
    read_baselines,
    withdraw_baseline,
)
from driftline.baselines.model import BaselineError, FeatureSchema, NumericStats, Histogram, Baseline


@pytest.fixture
def topic_settings(settings, unique_topic):
    return settings.model_copy(update={"baselines_topic": unique_topic})


def test_a_published_baseline_is_read_back_equal(topic_settings):
    baseline = example_baseline("churn", "7")
    publish_baseline(topic_settings, baseline)
    assert read_baselines(topic_settings) == {"churn|7": baseline}


def test_the_topic_is_created_compacted(topic_settings):
    publish_baseline(topic_settings, example_baseline())
    admin = AdminClient(topic_settings.kafka_client_config())
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic_settings.baselines_topic)
    try:
        configs = admin.describe_configs([resource])[resource].result(timeout=10)
    except Exception as exc:  # the embedded broker may not answer DescribeConfigs
        pytest.xfail(f"the broker does not describe topic configs: {exc}")
    assert configs["cleanup.policy"].value == "compact"


def test_the_latest_baseline_of_a_version_wins_and_a_tombstone_withdraws_it(topic_settings):
    first, second = example_baseline("m", "1"), example_baseline("m", "1")
    second = Baseline(second.model_name, second.model_version,
                      {"x": FeatureSchema("x", "numeric", min=0.0, max=2.0)}, second.statistics, rows=9)
    publish_baseline(topic_settings, first)
    publish_baseline(topic_settings, example_baseline("m", "2"))
    publish_baseline(topic_settings, second)
    seen = read_baselines(topic_settings)
    assert sorted(seen) == ["m|1", "m|2"]
    assert seen["m|1"].schema["x"].max == 2.0 and seen["m|1"].rows == 9
    withdraw_baseline(topic_settings, "m", "1")
    assert sorted(read_baselines(topic_settings)) == ["m|2"]


def test_a_missing_topic_is_an_empty_catalog(topic_settings):
    assert read_baselines(topic_settings) == {}


def test_a_running_catalog_follows_baselines_published_later(topic_settings):
    publish_baseline(topic_settings, example_baseline("a", "1"))
    changed: list[str] = []
    catalog = BaselineCatalog(topic_settings, on_change=changed.append)
    catalog.start()
    try:
        assert catalog.get("a", "1") is not None and catalog.get("b", "1") is None
        publish_baseline(topic_settings, example_baseline("b", "1"))
        deadline = time.monotonic() + 20
        while catalog.get("b", "1") is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert catalog.get("b", "1") == example_baseline("b", "1")
        assert changed == ["a|1", "b|1"]
    finally:
        catalog.stop()


def test_a_record_that_is_not_a_baseline_is_skipped_not_fatal(topic_settings):
    from confluent_kafka import Producer

    publish_baseline(topic_settings, example_baseline("good", "1"))
    producer = Producer(topic_settings.kafka_client_config())
    producer.produce(topic_settings.baselines_topic, key=b"bad|1", value=b"not gzip")
    assert producer.flush(10) == 0
    catalog = BaselineCatalog(topic_settings)
    catalog.refresh()
    assert sorted(catalog.baselines) == ["good|1"] and catalog.skipped == 1


def test_an_oversized_baseline_is_refused_with_the_reason(topic_settings):
    import numpy as np

    rng = np.random.default_rng(0)
    features = {f"f{i}": FeatureSchema(f"f{i}", "numeric") for i in range(40)}
    stats = {name: NumericStats(count=1, missing=0, mean=0.0, std=1.0, min=0.0, max=1.0, quantiles={},
                                histogram=Histogram([0.0, 1.0], [1]), sample=rng.random(5000).tolist())
             for name in features}
    with pytest.raises(BaselineError, match="above Kafka's default limit"):
        publish_baseline(topic_settings, Baseline("big", "1", features, stats))


def test_decode_refuses_what_is_not_a_baseline():
    with pytest.raises(BaselineError, match="gzip"):
        decode_baseline(b"{}")
    assert decode_baseline(encode_baseline(example_baseline())) == example_baseline()


def test_the_cli_builds_publishes_lists_and_withdraws_a_baseline(topic_settings, tmp_path):
    from typer.testing import CliRunner

    from driftline.cli import app

    train = tmp_path / "train.csv"
    train.write_text("amount,channel,label\n" + "".join(f"{i % 50},{'web' if i % 3 else 'app'},{i % 2}\n"
                                                         for i in range(500)))
    runner = CliRunner()
    env = {"DRIFTLINE_BASELINES_TOPIC": topic_settings.baselines_topic}
    kafka = ["--kafka-bootstrap", topic_settings.kafka_bootstrap]
    out = tmp_path / "churn-7.json"
    built = runner.invoke(app, ["baseline", "build", str(train), "--model", "churn", "--version", "7",
                                "--label-column", "label", "--output", str(out), "--quiet"])
    assert built.exit_code == 0, built.output
    published = runner.invoke(app, ["baseline", "publish", str(out), *kafka], env=env)
    assert published.exit_code == 0 and "published churn|7" in published.output, published.output
    listed = runner.invoke(app, ["baseline", "list", *kafka], env=env)
    assert listed.exit_code == 0 and "churn" in listed.output and "train.csv" in listed.output, listed.output
    assert read_baselines(topic_settings)["churn|7"].schema["channel"].domain == ["app", "web"]
    withdrawn = runner.invoke(app, ["baseline", "withdraw", "--model", "churn", "--version", "7", *kafka], env=env)
    assert withdrawn.exit_code == 0, withdrawn.output
    assert "no baselines" in runner.invoke(app, ["baseline", "list", *kafka], env=env).output


def test_publishing_an_invalid_file_fails_with_the_reason(topic_settings, tmp_path):
    from typer.testing import CliRunner

    from driftline.cli import app

    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something-else"}')
    result = CliRunner().invoke(app, ["baseline", "publish", str(bad), "--kafka-bootstrap", topic_settings.kafka_bootstrap])
    assert result.exit_code == 1 and "unknown baseline format" in result.output
