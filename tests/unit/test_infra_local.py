"""LocalInfrastructure's process handling, with small stand-in servers (no Kafka, no noida-db)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from driftline.connectors.infra import (
    InfrastructureError,
    LocalInfrastructure,
    LocalServer,
    PidRecord,
    free_ports,
    http_probe,
    port_in_use,
)

pytestmark = [
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc"),
    pytest.mark.timeout(60),
]


def http_server(name: str, port: int) -> LocalServer:
    """A Python http.server standing in for a real server."""
    url = f"http://127.0.0.1:{port}"
    return LocalServer(
        name=name,
        host="127.0.0.1",
        port=port,
        url=url,
        command=lambda _folder: [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        probe=http_probe(url),
        port_option=f"--{name}-port",
    )


def shell_server(name: str, port: int, script: str) -> LocalServer:
    """A server that runs ``sh -c script`` and answers only if the script listens (it does not)."""
    return LocalServer(
        name=name,
        host="127.0.0.1",
        port=port,
        url=f"127.0.0.1:{port}",
        command=lambda _folder: ["sh", "-c", script],
        probe=lambda _timeout: False,
    )


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def start_ticks(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def test_up_status_down_cycle(tmp_path: Path) -> None:
    p1, p2 = free_ports(2)
    infra = LocalInfrastructure(tmp_path, servers=(http_server("one", p1), http_server("two", p2)))
    assert [s.state for s in infra.status(0.2)] == ["stopped", "stopped"]

    results = infra.up(timeout=15)
    assert [r.started for r in results] == [True, True]
    assert all(r.status.running and r.status.answering for r in results)
    record = infra.read_record("one")
    assert record is not None and record.pid == results[0].status.pid and record.port == p1
    assert record.pgid == record.pid and record.start_ticks == start_ticks(record.pid)
    assert (tmp_path / "one" / "server.log").exists()

    again = infra.up(timeout=15)
    assert [r.started for r in again] == [False, False]
    assert [r.status.pid for r in again] == [r.status.pid for r in results]

    stopped = infra.down(timeout=5)
    assert [s.stopped for s in stopped] == [True, True]
    assert not any(s.forced for s in stopped)
    assert not any(alive(r.status.pid) for r in results)  # type: ignore[arg-type]
    assert infra.read_record("one") is None and infra.read_record("two") is None
    assert not port_in_use("127.0.0.1", p1) and not port_in_use("127.0.0.1", p2)
    assert [s.detail for s in infra.down()] == ["not running", "not running"]


def test_failure_stops_what_up_started_and_carries_the_log_tail(tmp_path: Path) -> None:
    p1, p2 = free_ports(2)
    infra = LocalInfrastructure(
        tmp_path, servers=(http_server("one", p1), shell_server("two", p2, "echo boom: cannot start >&2; exit 3"))
    )
    with pytest.raises(InfrastructureError) as info:
        infra.up(timeout=15)
    err = info.value
    assert err.server == "two" and "exited with code 3" in err.reason
    assert "boom: cannot start" in err.log_tail and "boom" in str(err)
    assert infra.read_record("one") is None and infra.read_record("two") is None
    assert not port_in_use("127.0.0.1", p1)


def test_server_that_never_answers_times_out(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    infra = LocalInfrastructure(tmp_path, servers=(shell_server("mute", port, "echo waiting; exec sleep 30"),))
    began = time.monotonic()
    with pytest.raises(InfrastructureError, match="did not answer .* in time") as info:
        infra.up(timeout=1)
    assert time.monotonic() - began < 10
    assert "waiting" in info.value.log_tail
    assert infra.read_record("mute") is None


def test_taken_port_is_reported_before_starting(tmp_path: Path) -> None:
    with socket.socket() as foreign:
        foreign.bind(("127.0.0.1", 0))
        foreign.listen()
        port = foreign.getsockname()[1]
        assert port_in_use("127.0.0.1", port)
        infra = LocalInfrastructure(tmp_path, servers=(http_server("web", port),))
        with pytest.raises(InfrastructureError, match=f"port {port} .* taken .* --web-port"):
            infra.up(timeout=5)
        assert not (tmp_path / "web" / "server.log").exists()


def test_down_forces_a_server_that_ignores_the_stop_signal(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    # SIGINT ignored by the shell and inherited as ignored by its sleep child
    stubborn = shell_server("stubborn", port, "trap '' INT; sleep 30 & sleep 30; wait")
    infra = LocalInfrastructure(tmp_path, servers=(stubborn,))
    launch = infra._launch(stubborn)  # started, without waiting for an answer it will never give
    time.sleep(0.2)
    [result] = infra.down(timeout=0.5)
    assert result.stopped and result.forced
    assert not alive(launch.record.pid)


def test_down_stops_only_a_process_matching_its_record(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    infra = LocalInfrastructure(tmp_path, servers=(shell_server("srv", 1, "true"),))
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        time.sleep(0.05)
        base = dict(name="srv", pid=proc.pid, pgid=proc.pid, port=1, url="x", started_at="t")
        for wrong in (
            PidRecord(**base, command=("sleep", "31"), start_ticks=start_ticks(proc.pid)),
            PidRecord(**base, command=("sleep", "30"), start_ticks=start_ticks(proc.pid) + 1),
        ):
            infra.pid_path("srv").write_text(wrong.to_json())
            [result] = infra.down(timeout=1)
            assert not result.stopped and "stale" in result.detail
            assert proc.poll() is None
            assert infra.read_record("srv") is None

        right = PidRecord(**base, command=("sleep", "30"), start_ticks=start_ticks(proc.pid), stop_signal="SIGTERM")
        infra.pid_path("srv").write_text(right.to_json())
        [result] = infra.down(timeout=2)
        assert result.stopped and not result.forced
        assert proc.wait(timeout=5) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_down_stops_left_over_group_members_of_a_dead_leader(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    infra = LocalInfrastructure(tmp_path, servers=(shell_server("srv", 1, "true"),))
    leader = subprocess.Popen(
        ["sh", "-c", "sleep 30 >/dev/null 2>&1 & echo $!"], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    orphan = int(leader.stdout.readline())  # type: ignore[union-attr]
    leader.wait(timeout=5)
    try:
        assert alive(orphan) and os.getpgid(orphan) == leader.pid
        record = PidRecord(
            name="srv",
            pid=leader.pid,
            pgid=leader.pid,
            port=1,
            url="x",
            command=("sh", "-c", "..."),
            started_at="t",
            start_ticks=0,
        )
        infra.pid_path("srv").write_text(record.to_json())
        [result] = infra.down(timeout=0.3)  # a background sleep ignores SIGINT: SIGKILL follows
        assert result.stopped and "left-over" in result.detail
        deadline = time.monotonic() + 5
        while alive(orphan) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(orphan)
    finally:
        if alive(orphan):
            os.kill(orphan, signal.SIGKILL)


def test_error_message_names_the_server_and_log() -> None:
    err = InfrastructureError("port 1 is taken", server="kafka", log_tail="line1\nline2")
    assert str(err).startswith("kafka: port 1 is taken")
    assert "line2" in str(err)
    assert str(InfrastructureError("plain")) == "plain"


def test_pid_record_round_trips() -> None:
    rec = PidRecord(name="kafka", pid=1, pgid=1, port=2, url="h:2", command=("a", "b"), started_at="t", start_ticks=3)
    assert PidRecord.from_json(rec.to_json()) == rec


def test_status_and_down_need_no_binaries_and_create_nothing(tmp_path: Path) -> None:
    infra = LocalInfrastructure(tmp_path / "absent", kafka_port=free_ports(1)[0], es_port=free_ports(1)[0])
    assert [s.state for s in infra.status(0.2)] == ["stopped", "stopped"]
    assert [s.stopped for s in infra.down()] == [False, False]
    assert not (tmp_path / "absent").exists()


def test_servers_stop_gracefully_even_when_started_by_a_parent_that_ignores_sigint(tmp_path: Path) -> None:
    """A non-interactive shell starts background jobs with SIGINT ignored; servers must not inherit that."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        (port,) = free_ports(1)
        infra = LocalInfrastructure(tmp_path, servers=(http_server("one", port),))
        assert all(r.started for r in infra.up(timeout=15))
    finally:
        signal.signal(signal.SIGINT, previous)
    stopped = infra.down(timeout=10)
    assert [s.stopped for s in stopped] == [True] and not any(s.forced for s in stopped)
