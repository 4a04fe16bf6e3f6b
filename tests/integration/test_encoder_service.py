"""The real model behind `streamrec encoder`: same vectors over HTTP as in-process, merged batches, clean stop."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from encoders.client import RemoteEncoder
from encoders.registry import load_model
from encoders.settings import EncoderSettings
from encoders.text import Vectors
from streamrec.localkafka import free_port
from streamrec.sample_data import QUERIES, catalog

pytestmark = pytest.mark.integration


def _service_batches(url: str) -> float:
    """Forward passes the service has run for merged batches, from its /metrics."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    match = re.search(r'^streamrec_encoder_batch_texts_count\{caller="service"\} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0  # absent until the first merged batch


def test_served_vectors_equal_in_process_vectors(tmp_path: Path) -> None:
    """Texts embedded by `streamrec encoder` (merged, length-sorted, over HTTP) allclose the in-process model's."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "STREAMREC_LOG_LEVEL": "info"}
    with (tmp_path / "encoder.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamrec.cli", "encoder", "--port", str(port)], stdout=log, stderr=log, env=env
        )
    try:
        local = load_model(EncoderSettings())
        remote = RemoteEncoder.connect(EncoderSettings(url=url, startup_wait_s=180))
        texts = [f"{p['title']}. {p['category']}" for p in catalog(24)] + list(QUERIES.values())

        async def served() -> tuple[Vectors, Vectors]:
            try:
                # One text per request from concurrent callers, like API queries: the service merges them.
                singles = await asyncio.gather(*(remote.encode([text], caller="api") for text in texts))
                whole = await remote.encode(texts, caller="worker")
                return np.concatenate(singles), whole
            finally:
                await remote.aclose()

        before = _service_batches(url)
        singles, whole = asyncio.run(served())
        merged_passes = _service_batches(url) - before
        expected = np.concatenate([local.encoder.encode([text]) for text in texts])
        np.testing.assert_allclose(singles, expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(whole, expected, rtol=1e-4, atol=1e-5)
        assert (remote.name, remote.dim, remote.info.version) == (local.name, local.dim, local.version)
        assert remote.info.device == local.device
        assert 0 < merged_passes < len(texts) + 1, "concurrent single-text requests share forward passes"
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=60)
    assert returncode == 0, (tmp_path / "encoder.log").read_text()[-2000:]
