"""A real single-node Apache Kafka broker (KRaft, no ZooKeeper) on 127.0.0.1, for the task-event tests.

For: formatting a fresh log directory, starting ``kafka.Kafka`` from the jars that ``tools/build.sh kafka``
copied into ``$CRONLET_BIN/kafka/libs``, waiting until the broker says it has started, stopping it and
starting it again on the same ports and the same log directory (so what was produced survives, as a
broker outage does), and removing everything on ``close()``, interpreter exit or Ctrl-C. Must not: fetch
jars (a missing build is ``binaries.MissingBinaryError`` naming the command), listen on anything but
127.0.0.1, or touch directories other than its own (stale ones of dead owners excepted).

The broker is both controller and broker (``process.roles=broker,controller``), with every internal
topic at replication factor 1, so that idempotent producers (acks=all) and consumer groups work on one
node. The JVM is kept small (``-Xmx256m``, serial GC, C1 only): start-up time matters more in tests than
throughput.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import TracebackType

from localkube import binaries, ports, procs
from localkube import cluster as localkube_cluster

log = logging.getLogger("localkube.kafka")

READY_LINE = b"Kafka Server started"  # logged by KafkaRaftServer once the broker serves clients
JVM_OPTIONS = (
    "-Xms64m",
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
)
# Only the broker's own start-up and warnings; Kafka's INFO lines are mostly config dumps.
LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = OUT
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
logger.broker.name = kafka.server.BrokerServer
logger.broker.level = INFO
"""


class KafkaStartError(RuntimeError):
    """The broker did not come up (or did not format); the message has the tail of its log."""


def libs_dir(*, directory: Path | None = None) -> Path:
    """``$CRONLET_BIN/kafka/libs``, or MissingBinaryError naming ``tools/build.sh kafka``."""
    libs = (directory if directory is not None else binaries.bin_dir()) / "kafka" / "libs"
    if not any(libs.glob("kafka_2.13-*.jar")):
        raise binaries.MissingBinaryError(
            f"the Kafka broker's jars are not in {libs}. Fetch them first: run tools/build.sh kafka "
            f"(or set CRONLET_BIN to the directory that holds them)."
        )
    return libs


def java() -> Path:
    home = os.environ.get("JAVA_HOME")
    found = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not found or not os.access(found, os.X_OK):
        raise binaries.MissingBinaryError("java not found (set JAVA_HOME or install a JRE, 17 or later)")
    return Path(found)


def random_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes in URL-safe base64 without padding, as ``Uuid.randomUuid``.

    Made here rather than by ``StorageTool random-uuid``, which would cost one more JVM start. Like Kafka,
    it never starts with ``-`` (a command line would read it as an option).
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def server_properties(*, port: int, controller_port: int, log_dirs: Path, partitions: int) -> str:
    voters = f"1@127.0.0.1:{controller_port}"
    listeners = f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}"
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": voters,
        "listeners": listeners,
        "advertised.listeners": listeners,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dirs),
        "num.partitions": str(partitions),
        "auto.create.topics.enable": "true",
        # One node: every internal topic must live with one replica, or producers with acks=all,
        # transactions, consumer groups and share groups wait for replicas that never come.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",  # 50 by default: a first consumer group then waits for 50
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "min.insync.replicas": "1",
        "group.initial.rebalance.delay.ms": "0",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


class KafkaBroker:
    """One broker. ``with KafkaBroker() as broker:`` or ``start()`` / ``stop()`` / ``start()`` / ``close()``.

    ``stop()`` ends the process and keeps the log directory; ``start()`` after it brings the same broker
    back (same ports, same data). ``close()`` also removes the directory, unless ``keep=True`` (or
    LOCALKUBE_KEEP=1). As with ``cluster.Cluster``, start it from a thread that lives as long as the broker:
    the kernel kills the JVM when the thread that started it ends.
    """

    def __init__(
        self,
        *,
        bin_dir: Path | None = None,
        tmp_root: Path | None = None,
        start_timeout: float = 90.0,
        stop_grace: float = 15.0,
        partitions: int = 3,
        keep: bool | None = None,
    ) -> None:
        self._bin_dir = bin_dir
        self._tmp_root = tmp_root if tmp_root is not None else Path(tempfile.gettempdir())
        self._start_timeout = start_timeout
        self._stop_grace = stop_grace
        self._partitions = partitions
        self._keep = keep if keep is not None else os.environ.get("LOCALKUBE_KEEP", "") not in ("", "0")
        self._dir: Path | None = None
        self._port = 0
        self._controller_port = 0
        self._process: procs.Process | None = None
        self._lock = threading.Lock()
        self.start_seconds: float | None = None  # of the last start, formatting included on the first
        self.exit_code: int | None = None  # of the last stop: 143 is a clean exit on SIGTERM

    # -- what callers use ------------------------------------------------------------------------------

    @property
    def dir(self) -> Path:
        """The broker's directory: server.properties, log4j2.properties, the server log, data/."""
        if self._dir is None:
            raise RuntimeError("the broker was never started")
        return self._dir

    @property
    def port(self) -> int:
        return self._port

    @property
    def bootstrap_servers(self) -> str:
        if self._dir is None:
            raise RuntimeError("the broker was never started")
        return f"127.0.0.1:{self._port}"

    @property
    def log_file(self) -> Path:
        return self.dir / "kafka.log"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.alive() else None

    def running(self) -> bool:
        return self._process is not None and self._process.alive()

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> KafkaBroker:
        """Start the broker (formatting its directory the first time) and wait until it serves clients."""
        with self._lock:
            if self.running():
                return self
            libs = libs_dir(directory=self._bin_dir)
            runtime = java()
            began = time.monotonic()
            if self._dir is None:
                self._create(runtime, libs, deadline=began + self._start_timeout)
            offset = self.log_file.stat().st_size if self.log_file.exists() else 0
            argv = [
                str(runtime),
                *JVM_OPTIONS,
                f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
                "-cp",
                f"{libs}/*",
                "kafka.Kafka",
                str(self.dir / "server.properties"),
            ]
            self._process = procs.start("kafka", argv, log=self.log_file)
            try:
                self._wait_ready(offset, deadline=began + self._start_timeout)
            except BaseException:
                self._kill()
                raise
            self.start_seconds = time.monotonic() - began
            log.info(
                "kafka up at %s in %.1f s (dir %s)", self.bootstrap_servers, self.start_seconds, self._dir
            )
            return self

    def stop(self) -> None:
        """End the broker (SIGTERM, then SIGKILL after the grace period); keep its directory and ports."""
        with self._lock:
            self._kill()

    def close(self) -> None:
        """Stop, then remove the directory (unless kept). Safe to call more than once."""
        with self._lock:
            atexit.unregister(self.close)
            self._kill()
            if self._dir is not None and self._dir.exists():
                if self._keep:
                    log.warning("kept the broker directory with its log: %s", self._dir)
                else:
                    shutil.rmtree(self._dir, ignore_errors=True)

    # -- how it starts ---------------------------------------------------------------------------------

    def _create(self, runtime: Path, libs: Path, *, deadline: float) -> None:
        # The cluster's own naming and owner file, so that its sweep (and ours) removes what a killed
        # owner left behind.
        localkube_cluster._sweep_stale(self._tmp_root)
        directory = Path(tempfile.mkdtemp(prefix=f"localkube-kafka-{os.getpid()}-", dir=self._tmp_root))
        (directory / ".localkube-owner").write_text(str(os.getpid()))
        self._dir = directory
        atexit.register(self.close)
        localkube_cluster.interrupt_on_sigterm()
        self._port, self._controller_port = ports.free_ports(2)
        (directory / "server.properties").write_text(
            server_properties(
                port=self._port,
                controller_port=self._controller_port,
                log_dirs=directory / "data",
                partitions=self._partitions,
            )
        )
        (directory / "log4j2.properties").write_text(LOG4J2)
        formatting = subprocess.run(
            [
                str(runtime),
                *JVM_OPTIONS,
                f"-Dlog4j2.configurationFile={directory / 'log4j2.properties'}",
                "-cp",
                f"{libs}/*",
                "kafka.tools.StorageTool",
                "format",
                "--cluster-id",
                random_cluster_id(),
                "--config",
                str(directory / "server.properties"),
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=max(1.0, deadline - time.monotonic()),
            check=False,
        )
        with self.log_file.open("ab") as out:
            out.write(formatting.stdout + formatting.stderr)
        if formatting.returncode != 0:
            raise KafkaStartError(
                f"kafka-storage format exited with code {formatting.returncode}:\n{procs.tail(self.log_file)}"
            )

    def _wait_ready(self, offset: int, *, deadline: float) -> None:
        process = self._process
        assert process is not None
        while True:
            if not process.alive():
                raise KafkaStartError(
                    f"kafka exited with code {process.popen.returncode} while starting; its log "
                    f"{self.log_file}:\n{procs.tail(self.log_file, lines=40)}"
                )
            with self.log_file.open("rb") as text:
                text.seek(offset)
                if READY_LINE in text.read() and _accepts(self._port):
                    return
            if time.monotonic() > deadline:
                raise KafkaStartError(
                    f"timed out after {self._start_timeout:.0f} s waiting for {READY_LINE.decode()!r} in "
                    f"{self.log_file}:\n{procs.tail(self.log_file, lines=40)}"
                )
            time.sleep(0.1)

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            procs.stop([process], grace=self._stop_grace)
            self.exit_code = process.popen.returncode


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1.0):
        return True
    return False
