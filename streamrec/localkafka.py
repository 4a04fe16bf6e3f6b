"""A real single-node Apache Kafka broker (KRaft mode) on loopback, for tests and the demo.

This is a thin, typed wrapper around ``deploy/kafka/kafka-local.sh``, which
fetches the broker jars from Maven Central with Maven (cached under
``$STREAMREC_CACHE_DIR``, by default ``~/.cache/streamrec``), formats the data
directory once, and starts ``kafka.Kafka`` in the background. The broker
outlives the Python process that started it until :meth:`LocalKafka.stop` is
called, so use the context manager (or ``try``/``finally``) in tests.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import threading
from pathlib import Path
from types import TracebackType

__all__ = ["DEFAULT_SCRIPT", "LocalKafka", "free_port"]

_log = logging.getLogger(__name__)

DEFAULT_SCRIPT: Path = Path(__file__).resolve().parent.parent / "deploy" / "kafka" / "kafka-local.sh"
"""The broker control script in this repository."""

# Generous bound for one script run: a cold start includes Maven downloading
# ~50 jars; the script enforces its own, tighter broker-start timeout.
_SCRIPT_TIMEOUT_S = 900.0

_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free now and not returned before by this process.

    The port is only probed (bound and released), so another process may
    still take it before it is used; remembering the ports already handed out
    keeps two consecutive calls (broker and controller port) from colliding.
    """
    with _handed_out_lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port: int = sock.getsockname()[1]
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise RuntimeError("could not find a free TCP port on 127.0.0.1")


class LocalKafka:
    """A single-node KRaft broker (broker and controller in one JVM) bound to 127.0.0.1.

    Args:
        data_dir: Directory holding ``server.properties``, the log directories
            (``logs/``), ``kafka.log`` and ``kafka.pid``. Created if missing;
            reused (not re-formatted) on later starts.
        port: The PLAINTEXT listener port clients connect to.
        controller_port: The KRaft controller listener port; a free port is
            picked when omitted.
        script: The control script; defaults to ``deploy/kafka/kafka-local.sh``
            in this repository.
        start_timeout_s: Seconds the script waits for the broker to become
            ready; ``None`` keeps the script's default
            (``STREAMREC_KAFKA_START_TIMEOUT_S`` or 60).
    """

    def __init__(
        self,
        data_dir: Path,
        port: int,
        controller_port: int | None = None,
        script: Path | None = None,
        *,
        start_timeout_s: float | None = None,
    ) -> None:
        self.data_dir: Path = Path(data_dir)
        self.port: int = port
        self.controller_port: int = controller_port if controller_port is not None else free_port()
        self.script: Path = script if script is not None else DEFAULT_SCRIPT
        self.start_timeout_s: float | None = start_timeout_s
        if self.port == self.controller_port:
            raise ValueError(f"port and controller_port must differ (both {self.port})")

    @property
    def bootstrap_servers(self) -> str:
        """The ``host:port`` string Kafka clients bootstrap from."""
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """The broker's own log (stdout and stderr of the JVM)."""
        return self.data_dir / "kafka.log"

    def start(self) -> None:
        """Start the broker and return once it accepts connections.

        Fetches the jars on the first run. A no-op if a broker is already
        running for this data directory.

        Raises:
            RuntimeError: The script failed; the message carries its output
                (including the tail of ``kafka.log``).
        """
        env: dict[str, str] = {}
        if self.start_timeout_s is not None:
            env["STREAMREC_KAFKA_START_TIMEOUT_S"] = str(max(1, round(self.start_timeout_s)))
        self._run(
            "start",
            "--port",
            str(self.port),
            "--controller-port",
            str(self.controller_port),
            extra_env=env,
        )

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after 30 s); a no-op if it is not running.

        Raises:
            RuntimeError: The script failed; the message carries its output.
        """
        self._run("stop")

    def is_running(self) -> bool:
        """Whether the broker process recorded for this data directory is alive."""
        return self._run("status", check=False) == 0

    def __enter__(self) -> LocalKafka:
        """Start the broker; stop it when the ``with`` block exits."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the broker, whether or not the block raised."""
        self.stop()

    def __repr__(self) -> str:
        """Show where the broker listens and keeps its data."""
        return f"LocalKafka(data_dir={str(self.data_dir)!r}, port={self.port}, controller_port={self.controller_port})"

    def _run(self, command: str, *args: str, check: bool = True, extra_env: dict[str, str] | None = None) -> int:
        """Run ``kafka-local.sh COMMAND --data-dir DIR ARGS`` and return its exit code.

        Raises:
            RuntimeError: ``check`` is true and the script exited non-zero,
                could not be run, or timed out.
        """
        argv = ["bash", str(self.script), command, "--data-dir", str(self.data_dir), *args]
        env = {**os.environ, **(extra_env or {})}
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
                timeout=_SCRIPT_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            output = error.output if isinstance(error.output, str) else ""
            raise RuntimeError(
                f"kafka-local.sh {command} did not finish within {_SCRIPT_TIMEOUT_S:.0f} s:\n{output}"
            ) from error
        except OSError as error:
            raise RuntimeError(f"cannot run {self.script}: {error}") from error
        output = done.stdout.strip()
        if check and done.returncode != 0:
            raise RuntimeError(f"kafka-local.sh {command} failed (exit {done.returncode}):\n{output}")
        if output and command != "status":
            for line in output.splitlines():
                _log.info("%s", line)
        return done.returncode
