"""Milvus Lite run as a gRPC server on loopback, for tests and local setups.

The embedded default opens a Milvus Lite file inside the process; this runs
the same engine as a separate server that any number of processes reach by
``http://127.0.0.1:<port>``, the code path of a real Milvus server. Fault
tests pause it (SIGSTOP) to make Milvus unavailable without losing its data.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from milvus_lite.server import Server
from pymilvus import MilvusClient, MilvusException


class LocalMilvus:
    """One Milvus Lite server process on a loopback port."""

    def __init__(self, db_path: Path, port: int) -> None:
        self.db_path = db_path
        self.port = port
        self._server: Server | None = None

    @property
    def uri(self) -> str:
        """The URI clients connect to."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def _process(self) -> subprocess.Popen[bytes]:
        # milvus_lite keeps its child process private; pausing needs its pid.
        process: subprocess.Popen[bytes] | None = getattr(self._server, "_p", None)
        if process is None:
            raise RuntimeError("Milvus Lite server is not running")
        return process

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the server and wait until it answers."""
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        server = Server(str(self.db_path), f"127.0.0.1:{self.port}")
        if not server.init() or not server.start():
            raise RuntimeError(f"Milvus Lite did not start for {self.db_path}")
        self._server = server
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                MilvusClient(uri=self.uri, timeout=2).list_collections()
                return
            except MilvusException:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.2)

    def pause(self) -> None:
        """Freeze the server process (SIGSTOP): calls to it time out until :meth:`resume`."""
        os.kill(self._process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server run again (SIGCONT)."""
        os.kill(self._process.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop the server; its data stays in ``db_path``."""
        if self._server is not None:
            with contextlib.suppress(RuntimeError, ProcessLookupError):  # already gone
                self.resume()
            self._server.stop()
            self._server = None
