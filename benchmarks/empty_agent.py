"""Events/s of an empty faust-streaming agent: the per-event ceiling of any Faust pipeline.

The agent does nothing but count what it reads (``async for _ in stream:
count += 1``), so its rate is what Faust itself costs per event on these
servers: the aiokafka consumer, the stream, acknowledgements and offset
commits. ``benchmarks/pipeline_throughput.py`` compares the pipeline with it.

How it is measured: a Faust worker runs in a child process (its own process
group), with a fresh app id and consumer group, reading the topic from the
beginning (``consumer_auto_offset_reset="earliest"``, memory table store, no
web server, a lowered session timeout so the group join is quick). It times,
with ``time.perf_counter()``, from the first event to the ``expected``-th one
and prints one line::

    EMPTY_AGENT events=N seconds=S rate=R

where R = (N - 1) / S, the N - 1 events read after the first one over the time
they took (the group join and start-up are not counted). The parent reads the
line and kills the child's process group.

Run:
    python benchmarks/empty_agent.py                    # embedded servers, 20,000 events, 4 partitions
    python benchmarks/empty_agent.py --expected 100000 --partitions 8
    python benchmarks/empty_agent.py --bootstrap 127.0.0.1:9092 --topic T --partitions 4 --expected N

Without ``--bootstrap`` the embedded Kafka-API and Elasticsearch-API servers
are started on free ports, a topic is created and filled with ``--expected``
messages of about 600 bytes, and the servers are stopped at the end. With
``--bootstrap``, ``--topic`` must already hold at least ``--expected`` events.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MARKER = "EMPTY_AGENT"
_RESULT = re.compile(rf"^{MARKER} events=(\d+) seconds=(\S+) rate=(\S+)$")
_TAIL_LINES = 30


# --------------------------------------------------------------------------
# The child: one Faust worker with an empty agent
# --------------------------------------------------------------------------


def _run_worker(bootstrap: str, topic: str, partitions: int, expected: int, app_id: str, datadir: str,
                session_timeout_ms: int, loglevel: str) -> None:
    """Run a Faust worker whose only agent counts the events of ``topic``; exits after the ``expected``-th."""
    import faust

    app = faust.App(
        app_id,
        broker=";".join(f"kafka://{server}" for server in bootstrap.split(",")),
        store="memory://",
        datadir=datadir,
        topic_partitions=partitions,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        broker_session_timeout=session_timeout_ms / 1000,
        broker_heartbeat_interval=max(0.25, session_timeout_ms / 6000),
    )
    source = app.topic(topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                       partitions=partitions)

    @app.agent(source)
    async def empty(stream: faust.StreamT) -> None:
        count = 0
        first = 0.0
        async for _ in stream:
            count += 1
            if count == 1:
                first = time.perf_counter()
            if count >= expected:
                seconds = time.perf_counter() - first
                rate = (count - 1) / seconds if seconds > 0 else float("inf")
                # straight to file descriptor 1: the worker redirects sys.stdout into its log
                os.write(1, f"{MARKER} events={count} seconds={seconds:.6f} rate={rate:.3f}\n".encode())
                os._exit(0)  # nothing to keep: the app id and consumer group are thrown away

    faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False).execute_from_commandline()


# --------------------------------------------------------------------------
# The parent: start the child, read its line, always stop it
# --------------------------------------------------------------------------


def empty_agent_rate(bootstrap: str, topic: str, partitions: int, expected: int, *, timeout_s: float = 300.0,
                     session_timeout_ms: int = 6000) -> float:
    """Events/s of an empty Faust agent reading `expected` events of `topic` from the beginning (from its first to its last event).

    A Faust worker (fresh app id and consumer group, ``earliest`` offsets, memory
    store, no web server) runs in a child process of its own process group and
    counts the events of ``topic``; the rate is ``(expected - 1) / seconds``
    between its first and its ``expected``-th event, so the group join and the
    worker's start-up are not counted.

    ``bootstrap`` is a comma-separated list of ``host:port``; ``partitions`` the
    topic's partition count; ``timeout_s`` bounds the whole run (start-up
    included); ``session_timeout_ms`` is the consumer-group session timeout
    (the heartbeat interval is a sixth of it, at least 0.25 s).

    Raises RuntimeError, with the child's last log lines, if the worker dies or
    does not read ``expected`` events within ``timeout_s``; the child's process
    group is killed in every case.

    Example:
        >>> empty_agent_rate("127.0.0.1:9092", "bench.events", 4, 20_000)  # doctest: +SKIP
        4321.0
    """
    if expected < 2:
        raise ValueError("expected must be at least 2: the rate is timed from the first to the last event")
    if partitions < 1:
        raise ValueError("partitions must be at least 1")
    folder = Path(tempfile.mkdtemp(prefix="empty-agent-"))
    log_path = folder / "worker.log"
    argv = [
        sys.executable, str(Path(__file__).resolve()), "--run-worker",
        "--bootstrap", bootstrap, "--topic", topic, "--partitions", str(partitions), "--expected", str(expected),
        "--app-id", f"empty-agent-{uuid.uuid4().hex}", "--datadir", str(folder / "faust"),
        "--session-timeout-ms", str(session_timeout_ms),
    ]
    stdout_lines: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    found: list[re.Match[str]] = []
    finished = threading.Event()  # set on the result line or at the end of the child's stdout

    def tail() -> str:
        try:
            lines = log_path.read_text(errors="replace").splitlines()[-_TAIL_LINES:]
        except OSError:
            lines = []
        return "\n".join([*lines, *stdout_lines])

    try:
        with log_path.open("wb") as log_file:
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log_file,
                                     text=True, errors="replace", start_new_session=True)
        try:
            def read() -> None:
                assert child.stdout is not None
                for line in child.stdout:
                    line = line.rstrip("\n")
                    match = _RESULT.match(line)
                    if match:
                        found.append(match)
                        break
                    stdout_lines.append(line)
                finished.set()

            threading.Thread(target=read, name="empty-agent-stdout", daemon=True).start()
            if not finished.wait(timeout_s):
                raise RuntimeError(f"the empty agent did not read {expected:,} events of {topic} in {timeout_s:g} s; "
                                   f"last lines of the worker:\n{tail()}")
            if not found:
                code = child.wait(10)
                raise RuntimeError(f"the empty-agent worker stopped (exit {code}) before reading {expected:,} events "
                                   f"of {topic}; last lines of the worker:\n{tail()}")
            try:
                child.wait(5)  # it exits by itself right after the line
            except subprocess.TimeoutExpired:
                pass
            return float(found[0].group(3))
        finally:
            if child.returncode is None:  # not reaped yet: its pid still names its process group
                try:
                    os.killpg(child.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                child.wait(10)
            if child.stdout is not None:
                child.stdout.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------
# Script mode
# --------------------------------------------------------------------------


def fill_topic(bootstrap: str, topic: str, partitions: int, count: int, size: int = 600) -> None:
    """Create ``topic`` with ``partitions`` partitions and produce ``count`` keyed messages of ``size`` bytes."""
    from confluent_kafka import Producer

    from driftline.connectors.kafka_admin import ensure_topics
    from driftline.settings import Settings

    settings = Settings(kafka_bootstrap=bootstrap)
    ensure_topics(settings, {topic: partitions})
    padding = b"x" * size
    failed: list[str] = []

    def delivered(err: object, _msg: object) -> None:
        if err is not None:
            failed.append(str(err))

    producer = Producer(settings.kafka_client_config() | {"linger.ms": 5})
    for i in range(count):
        key = str(i).encode()
        value = (b'{"event": %d, "padding": "' % i + padding)[: size - 2] + b'"}'
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=delivered)
                break
            except BufferError:  # local queue full: let deliveries drain
                producer.poll(0.1)
        if i % 10_000 == 0:
            producer.poll(0)
    remaining = producer.flush(120)
    if remaining or failed:
        raise RuntimeError(f"{remaining} messages not delivered, {len(failed)} failed"
                           + (f" (first: {failed[0]})" if failed else ""))


def _stop_on_signals() -> None:
    """SIGTERM/SIGINT exit through the ExitStack, so the embedded servers are stopped, not left running."""

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (host:port,...); default: start embedded servers")
    parser.add_argument("--topic", help="the topic to read (default with --bootstrap: none; embedded: a fresh one)")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--expected", type=int, default=20_000, help="events to read (and, embedded, to produce)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds allowed for the worker run")
    parser.add_argument("--session-timeout-ms", type=int, default=6000)
    # the child's mode, used by empty_agent_rate()
    parser.add_argument("--run-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--app-id", help=argparse.SUPPRESS)
    parser.add_argument("--datadir", help=argparse.SUPPRESS)
    parser.add_argument("--loglevel", default="info", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.run_worker:
        if not (args.bootstrap and args.topic and args.app_id and args.datadir):
            parser.error("--run-worker needs --bootstrap, --topic, --app-id and --datadir")
        _run_worker(args.bootstrap, args.topic, args.partitions, args.expected, args.app_id, args.datadir,
                    args.session_timeout_ms, args.loglevel)
        return 0

    if args.bootstrap and not args.topic:
        parser.error("--bootstrap needs --topic (a topic holding at least --expected events)")
    _stop_on_signals()
    with ExitStack() as stack:
        bootstrap, topic = args.bootstrap, args.topic
        if not bootstrap:
            from driftline.connectors.infra import free_ports, running_infrastructure

            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="driftline-bench-")))
            kafka_port, es_port = free_ports(2)
            print("starting the embedded servers ...", flush=True)
            infra = stack.enter_context(running_infrastructure(folder / "infra", kafka_port=kafka_port, es_port=es_port))
            bootstrap = infra.kafka_bootstrap
            topic = topic or f"bench.empty.{uuid.uuid4().hex[:6]}"
            print(f"filling {topic} ({args.partitions} partitions) with {args.expected:,} messages of ~600 B ...",
                  flush=True)
            fill_topic(bootstrap, topic, args.partitions, args.expected)
        print(f"empty Faust agent reading {args.expected:,} events of {topic} ...", flush=True)
        rate = empty_agent_rate(bootstrap, topic, args.partitions, args.expected, timeout_s=args.timeout,
                                session_timeout_ms=args.session_timeout_ms)
    print(f"empty Faust agent: {rate:,.0f} events/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
