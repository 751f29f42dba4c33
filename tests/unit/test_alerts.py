"""Drift events to alerts: cooldown per key, severities, deterministic ids, replay safety. Pure, no server."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest

from driftline.connectors.elasticsearch.indices import event_time, index_name
from driftline.connectors.elasticsearch.mappings import ALERT_PROPERTIES, COMMON_PROPERTIES, DRIFT_PROPERTIES, merge
from driftline.streams.alerts import (
    DEFAULT_COOLDOWN_S,
    DEFAULT_SEVERITIES,
    Alert,
    AlertCounts,
    AlertPolicy,
    DriftEvent,
    DriftKind,
    Severity,
)

T0 = 1_790_000_000_000  # 2026-09-21T14:13:20Z, epoch ms
MINUTE = 60_000
HOUR = 60 * MINUTE


def drift(
    position: int = 100,
    at: int = T0,
    *,
    kind: str = "concept",
    detector: str = "adwin",
    stream: str = "error",
    model: str = "fraud",
    version: str = "3",
    slice: dict[str, Any] | None = None,  # noqa: A002 - the domain's word
    **stats: Any,
) -> DriftEvent:
    return DriftEvent(
        detector, kind, stream, model, version, position=position, event_time_ms=at,
        slice={"region": "eu"} if slice is None else slice, **stats,
    )  # fmt: skip


class GetSetOnlyStore(MutableMapping[str, Any]):
    """A store that allows only what a Faust Table is used for here: get, set and ``in``."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.data[key] = json.loads(json.dumps(value))  # values must survive a JSON changelog

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def __delitem__(self, key: str) -> None:
        raise AssertionError("the policy must not delete keys")

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("the policy must not iterate the store")

    def __len__(self) -> int:
        raise AssertionError("the policy must not count the store")


# --- cooldown -------------------------------------------------------------------------


def test_first_drift_of_a_key_raises_an_alert():
    policy, store = AlertPolicy(), {}
    alert = policy.consider(drift(), store)
    assert isinstance(alert, Alert)
    assert alert.drift == drift()
    assert alert.rule == "concept_drift" and alert.status == "active"
    assert policy.counts == AlertCounts(raised=1, suppressed=0, replayed=0)


def test_drift_within_the_cooldown_is_suppressed_and_counted():
    policy, store = AlertPolicy(cooldown_s=3600), {}
    assert policy.consider(drift(100, T0), store) is not None
    later = [drift(100 + i, T0 + i * MINUTE) for i in range(1, 60)]  # one drift a minute for 59 minutes
    assert [policy.consider(d, store) for d in later] == [None] * 59
    assert policy.counts == AlertCounts(raised=1, suppressed=59, replayed=0)


def test_drift_at_the_end_of_the_cooldown_raises_a_new_alert():
    policy, store = AlertPolicy(cooldown_s=3600), {}
    first = policy.consider(drift(100, T0), store)
    assert policy.consider(drift(200, T0 + HOUR - 1), store) is None
    second = policy.consider(drift(300, T0 + HOUR), store)
    assert second is not None and second.id != first.id
    # the new alert starts a new cooldown
    assert policy.consider(drift(400, T0 + HOUR + 30 * MINUTE), store) is None
    assert policy.counts == AlertCounts(raised=2, suppressed=2, replayed=0)


def test_cooldown_runs_in_event_time_not_arrival_order():
    policy, store = AlertPolicy(cooldown_s=3600), {}
    policy.consider(drift(500, T0 + 2 * HOUR), store)
    # an older drift event arriving late falls before the last alert: suppressed
    assert policy.consider(drift(100, T0), store) is None


@pytest.mark.parametrize(
    "other",
    [
        {"model": "churn"},
        {"version": "4"},
        {"stream": "latency"},
        {"slice": {"region": "us"}},
        {"slice": {}},
        {"slice": {"region": "eu", "tier": "gold"}},
    ],
    ids=["model", "version", "stream", "slice-value", "no-slice", "finer-slice"],
)
def test_keys_are_independent(other: dict[str, Any]):
    policy, store = AlertPolicy(cooldown_s=3600), {}
    assert policy.consider(drift(100, T0), store) is not None
    assert policy.consider(drift(101, T0 + MINUTE, **other), store) is not None
    assert policy.consider(drift(102, T0 + 2 * MINUTE), store) is None
    assert policy.consider(drift(103, T0 + 3 * MINUTE, **other), store) is None


def test_detector_and_feature_share_the_key_of_their_stream():
    policy, store = AlertPolicy(), {}
    assert policy.consider(drift(detector="adwin"), store) is not None
    assert policy.consider(drift(detector="page_hinkley", at=T0 + MINUTE), store) is None


def test_zero_cooldown_alerts_on_every_new_drift():
    policy, store = AlertPolicy(cooldown_s=0), {}
    alerts = [policy.consider(drift(p, T0), store) for p in (1, 2, 3)]
    assert all(a is not None for a in alerts) and len({a.id for a in alerts}) == 3


# --- replays and restarts -----------------------------------------------------------------


def test_replayed_drift_gives_the_same_alert_and_no_new_one():
    policy, store = AlertPolicy(), {}
    first = policy.consider(drift(), store)
    state = json.loads(json.dumps(store))
    again = policy.consider(drift(), store)
    assert again is not None and again.id == first.id and again.document() == first.document()
    assert store == state
    assert policy.counts == AlertCounts(raised=1, suppressed=0, replayed=1)


def test_replayed_suppressed_drift_stays_suppressed():
    policy, store = AlertPolicy(), {}
    policy.consider(drift(100, T0), store)
    assert policy.consider(drift(200, T0 + MINUTE), store) is None
    assert policy.consider(drift(200, T0 + MINUTE), store) is None
    assert policy.counts == AlertCounts(raised=1, suppressed=2, replayed=0)


def test_replaying_a_whole_sequence_gives_the_same_alert_ids():
    events = [drift(i, T0 + i * 10 * MINUTE) for i in range(20)]  # 200 minutes: alerts at 0, 60, 120, 180
    policy, store = AlertPolicy(), {}
    first_run = [a.id for e in events if (a := policy.consider(e, store)) is not None]
    assert first_run == [f"alert-{events[i].id}" for i in (0, 6, 12, 18)]
    # a replay from scratch with fresh state decides exactly the same
    fresh_store: dict[str, Any] = {}
    fresh_policy = AlertPolicy()
    replay = [a.id for e in events if (a := fresh_policy.consider(e, fresh_store)) is not None]
    assert replay == first_run
    assert fresh_store == store


def test_state_survives_a_restart():
    store: dict[str, Any] = {}
    before = AlertPolicy()
    raised = before.consider(drift(100, T0), store)
    changelog = json.loads(json.dumps(store))  # what a Faust table restores after a restart

    after = AlertPolicy()
    assert after.consider(drift(200, T0 + 10 * MINUTE), changelog) is None
    assert after.consider(drift(100, T0), changelog).id == raised.id
    assert after.consider(drift(300, T0 + HOUR), changelog) is not None
    assert after.counts == AlertCounts(raised=1, suppressed=1, replayed=1)


def test_policy_uses_only_get_set_and_json_values_of_the_store():
    policy, store = AlertPolicy(), GetSetOnlyStore()
    assert policy.consider(drift(100, T0), store) is not None
    assert policy.consider(drift(200, T0 + MINUTE), store) is None
    assert policy.consider(drift(100, T0), store) is not None
    assert drift().alert_key in store


def test_store_value_records_the_last_alert():
    policy, store = AlertPolicy(cooldown_s=600), {}
    alert = policy.consider(drift(), store)
    assert store == {
        drift().alert_key: {
            "alert_id": alert.id,
            "drift_event_id": drift().id,
            "raised_at_ms": T0,
            "cooldown_until_ms": T0 + 600_000,
            "severity": "critical",
        }
    }


# --- severities --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "severity"),
    [
        ("concept", "critical"),
        ("label", "high"),
        ("data", "warning"),
        ("prediction", "warning"),
        ("latency", "warning"),
        ("quality", "warning"),
    ],
)
def test_default_severity_by_drift_kind(kind: str, severity: str):
    alert = AlertPolicy().consider(drift(kind=kind), {})
    assert alert.severity == Severity(severity)
    assert alert.rule == f"{kind}_drift"
    assert alert.document()["alert"]["severity"] == severity


def test_every_kind_has_a_default_severity_and_the_default_cooldown_is_an_hour():
    assert set(DEFAULT_SEVERITIES) == set(DriftKind)
    assert DEFAULT_COOLDOWN_S == 3600.0
    assert AlertPolicy().cooldown_s == 3600.0


def test_custom_severities_override_only_the_kinds_given():
    policy = AlertPolicy(severities={"data": "high", DriftKind.CONCEPT: Severity.HIGH})
    assert policy.severity_of("data") is Severity.HIGH
    assert policy.severity_of(DriftKind.CONCEPT) is Severity.HIGH
    assert policy.severity_of("latency") is Severity.WARNING


@pytest.mark.parametrize("bad", [{"cooldown_s": -1}, {"cooldown_s": float("nan")}, {"severities": {"data": "urgent"}}, {"severities": {"weather": "high"}}])
def test_invalid_policy_settings_are_refused(bad: dict[str, Any]):
    with pytest.raises(ValueError):
        AlertPolicy(**bad)


# --- ids ---------------------------------------------------------------------------------


def test_drift_ids_are_deterministic_hashes():
    assert drift().id == drift().id
    assert re.fullmatch(r"[0-9a-f]{32}", drift().id)
    assert drift(slice={"a": "1", "b": "2"}).id == drift(slice={"b": "2", "a": 1}).id
    # event time and statistics are not part of the identity: the same position is the same drift
    assert drift(at=T0).id == drift(at=T0 + 1, statistic=0.3).id


@pytest.mark.parametrize(
    "other",
    [{"position": 101}, {"model": "churn"}, {"version": "4"}, {"stream": "latency"}, {"detector": "kswin"},
     {"slice": {"region": "us"}}, {"slice": {}}, {"feature": "age"}],
)  # fmt: skip
def test_drift_ids_differ_by_model_version_slice_stream_detector_feature_position(other: dict[str, Any]):
    base = {"position": 100}
    assert drift(**(base | other)).id != drift(**base).id


def test_drift_events_and_alerts_are_hashable_by_identity():
    assert len({drift(), drift(), drift(position=7)}) == 2
    policy = AlertPolicy()
    assert len({policy.alert_for(drift()), policy.alert_for(drift())}) == 1


def test_alert_id_derives_from_the_drift_event_id():
    event = drift()
    alert = AlertPolicy().consider(event, {})
    assert alert.id == f"alert-{event.id}"
    assert alert.document()["alert"]["drift_event_id"] == event.id


def test_slice_separators_cannot_make_two_keys_equal():
    assert drift(slice={"a": "1,b=2"}).alert_key != drift(slice={"a": "1", "b": "2"}).alert_key
    assert drift(slice={"a": "1,b=2"}).id != drift(slice={"a": "1", "b": "2"}).id


# --- documents ------------------------------------------------------------------------


def _paths(doc: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and key not in ("labels", "parameters"):
            yield from _paths(value, path + ".")
        else:
            yield path


def _mapped(properties: dict[str, Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for key, value in properties.items():
        if "properties" in value:
            out |= _mapped(value["properties"], f"{prefix}{key}.")
        else:
            out.add(f"{prefix}{key}")
    return out


def _full_drift() -> DriftEvent:
    return drift(
        kind="data", detector="ks", stream="age", feature="age", statistic=0.31, threshold=0.2, p_value=0.001,
        window_size=500, baseline="training-2026-09", parameters={"alpha": 0.01},
    )  # fmt: skip


def test_drift_document_has_exactly_the_mapped_fields():
    doc = _full_drift().document()
    mapped = _mapped(merge(COMMON_PROPERTIES, DRIFT_PROPERTIES))
    assert set(_paths(doc)) <= mapped
    assert doc["drift"] == {
        "detector": "ks", "kind": "data", "stream": "age", "feature": "age", "statistic": 0.31, "threshold": 0.2,
        "p_value": 0.001, "position": 100, "window_size": 500, "baseline": "training-2026-09", "detected": True,
        "parameters": {"alpha": 0.01},
    }  # fmt: skip
    assert doc["model"] == {"name": "fraud", "version": "3"}
    assert doc["labels"] == {"region": "eu"}
    assert doc["event"] == {"id": _full_drift().id, "kind": "event", "dataset": "driftline.drift"}


def test_absent_statistics_are_left_out_of_the_document():
    assert set(drift().document()["drift"]) == {"detector", "kind", "stream", "position", "detected"}


def test_alert_document_has_the_alert_and_the_drift_fields():
    alert = AlertPolicy(cooldown_s=1800).consider(_full_drift(), {})
    doc = alert.document()
    assert set(_paths(doc)) <= _mapped(merge(COMMON_PROPERTIES, ALERT_PROPERTIES))
    assert doc["drift"] == _full_drift().document()["drift"]
    assert doc["alert"] == {
        "id": alert.id,
        "rule": "data_drift",
        "severity": "warning",
        "status": "active",
        "message": alert.message,
        "cooldown_s": 1800.0,
        "cooldown_until": "2026-09-21T14:43:20.000Z",
        "drift_event_id": _full_drift().id,
    }
    assert doc["event"]["kind"] == "alert" and doc["event"]["id"] == alert.id
    assert alert.message.startswith("[warning] data drift on age of fraud 3 (region=eu): ks at position 100")


def test_timestamps_are_iso_utc_event_time_so_the_daily_index_is_stable():
    doc = drift(at=T0 + 7).document()
    assert doc["@timestamp"] == "2026-09-21T14:13:20.007Z"
    assert event_time(doc).timestamp() * 1000 == pytest.approx(T0 + 7)
    assert index_name("driftline", "drift", event_time(doc)) == "driftline-drift-2026.09.21"


def test_alert_json_payload_is_the_document():
    alert = AlertPolicy().consider(_full_drift(), {})
    assert json.loads(alert.to_json()) == alert.document()
    assert alert.to_json() == alert.to_json()


def test_drift_event_round_trips_through_its_document_and_the_alert_document():
    event = _full_drift()
    assert DriftEvent.from_document(event.document()) == event
    assert DriftEvent.from_document(json.loads(AlertPolicy().consider(event, {}).to_json())) == event


# --- validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [{"kind": "weather"}, {"position": -1}, {"at": -5}, {"model": ""}, {"statistic": float("inf")},
     {"p_value": float("nan")}, {"position": True}],
)  # fmt: skip
def test_invalid_drift_events_are_refused(bad: dict[str, Any]):
    with pytest.raises(ValueError):
        drift(**bad)


def test_slice_values_are_text_and_none_values_are_dropped():
    event = drift(slice={"tier": 2, "beta": True, "country": None})
    assert event.slice == {"beta": "true", "tier": "2"}
    assert event.document()["labels"] == {"beta": "true", "tier": "2"}
