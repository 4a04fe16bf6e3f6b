"""Encoder service: naive per-request encoding vs dynamic batching, same workload, one run.

Both ways run the real model behind the real service (``encoders.service``)
started in-process on a loopback port, and ``--clients`` concurrent callers
send one text per request through the real HTTP client
(``encoders.client.RemoteEncoder``), like API queries:

- naive: ``max_batch_size=1``, one forward pass per request;
- batched: dynamic batching (``--max-batch`` texts, ``--max-wait-ms``),
  texts sorted by length inside each batch.

Prints throughput (texts/s), p50/p99 latency per request as the client sees
it, forward passes, mean batch size and this process's CPU time per text
(which other load on the machine disturbs less than wall time), the ratios,
and the device. Modes
alternate for ``--rounds`` rounds and the medians are compared, because a
shared machine's noise would otherwise decide the ratio.

    python bench/encoder.py [--workload queries|products|both] [--requests 480] [--rounds 3] [--clients 32]
        [--precision auto|bfloat16] [--max-batch 32] [--max-wait-ms 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from prometheus_client import REGISTRY

from encoders.client import RemoteEncoder
from encoders.registry import LoadedModel, load_model
from encoders.service import create_encoder_app, serving
from encoders.settings import EncoderSettings
from streamrec.sample_data import catalog

TARGET_RATIO = 3.0
TARGET_P99_MS = 250.0


@dataclass(frozen=True)
class Result:
    """One mode's measurements."""

    texts_per_s: float
    p50_ms: float
    p99_ms: float
    passes: float
    mean_batch: float
    cpu_ms_per_text: float


def workload(kind: str, n: int, seed: int = 11) -> list[str]:
    """``n`` texts: shopper-like queries (2-4 words of a title) or product texts (title and category)."""
    rng = random.Random(seed)
    products = catalog(400)
    texts = []
    for _ in range(n):
        product = rng.choice(products)
        if kind == "products":
            texts.append(f"{product['title']}. {str(product['category']).replace('-', ' ')}")
        else:
            words = str(product["title"]).lower().replace(",", "").split()
            start = rng.randrange(max(1, len(words) - 2))
            texts.append(" ".join(words[start : start + rng.randint(2, 4)]))
    return texts


def _service_batches() -> tuple[float, float]:
    labels = {"caller": "service"}
    count = REGISTRY.get_sample_value("streamrec_encoder_batch_texts_count", labels) or 0.0
    total = REGISTRY.get_sample_value("streamrec_encoder_batch_texts_sum", labels) or 0.0
    return count, total


async def measure(model: LoadedModel, settings: EncoderSettings, texts: Sequence[str], clients: int) -> Result:
    """Serve ``model`` with ``settings`` on loopback; ``clients`` callers send ``texts`` one per request."""
    app = create_encoder_app(settings, lambda: model)
    async with serving(app) as url:
        client_settings = settings.model_copy(update={"url": url, "startup_wait_s": 60.0, "timeout_s": 120.0})
        remote = await RemoteEncoder.open(client_settings)
        try:
            # Untimed warm-up at full concurrency: connections, allocator, code paths.
            await asyncio.gather(*(remote.encode([text], caller="bench") for text in texts[: 2 * clients]))
            latencies: list[float] = []
            queue = iter(texts)

            async def caller() -> None:
                for text in queue:
                    started = time.perf_counter()
                    await remote.encode([text], caller="bench")
                    latencies.append(time.perf_counter() - started)

            passes_before, texts_before = _service_batches()
            started, cpu_started = time.perf_counter(), time.process_time()
            await asyncio.gather(*(caller() for _ in range(clients)))
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            passes_after, texts_after = _service_batches()
        finally:
            await remote.aclose()
    passes = passes_after - passes_before
    p50, p99 = np.percentile(np.asarray(latencies) * 1000, [50, 99])
    mean_batch = (texts_after - texts_before) / max(passes, 1)
    return Result(len(texts) / elapsed, float(p50), float(p99), passes, mean_batch, cpu * 1000 / len(texts))


def _row(mode: str, result: Result) -> str:
    return (
        f"{mode:<8} {result.texts_per_s:>9.1f} {result.p50_ms:>8.1f} {result.p99_ms:>8.1f}"
        f" {result.passes:>7.0f} {result.mean_batch:>6.1f} {result.cpu_ms_per_text:>11.1f}"
    )


async def main(args: argparse.Namespace) -> None:
    base = EncoderSettings(precision=args.precision)
    model = load_model(base)
    print(
        f"device: {model.device}, precision {model.precision}, torch threads {torch.get_num_threads()},"
        f" model {model.name} {model.version},"
        f" {args.clients} clients, {args.requests} requests of 1 text each, over HTTP on loopback"
    )
    naive_settings = base.model_copy(update={"max_batch_size": 1, "max_wait_ms": 0.0})
    batched_settings = base.model_copy(update={"max_batch_size": args.max_batch, "max_wait_ms": args.max_wait_ms})
    print(f"batched: max_batch_size={args.max_batch}, max_wait_ms={args.max_wait_ms}; naive: max_batch_size=1")
    kinds = ["queries", "products"] if args.workload == "both" else [args.workload]
    for kind in kinds:
        texts = workload(kind, args.requests)
        mean_chars = sum(map(len, texts)) / len(texts)
        print(f"\nworkload: {kind} (mean {mean_chars:.0f} chars), e.g. {texts[0]!r}")
        print(f"{'mode':<8} {'texts/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'passes':>7} {'batch':>6} {'cpu ms/text':>11}")
        runs: dict[str, list[Result]] = {"naive": [], "batched": []}
        # Modes alternate round by round, so both see the same noise from
        # whatever else shares the machine; the medians are compared.
        for _ in range(args.rounds):
            for mode, settings in (("naive", naive_settings), ("batched", batched_settings)):
                runs[mode].append(await measure(model, settings, texts, args.clients))
                print(_row(mode, runs[mode][-1]))
        naive, batched = (_median(runs[mode]) for mode in ("naive", "batched"))
        print(f"median of {args.rounds} rounds:")
        print(_row("naive", naive))
        print(_row("batched", batched))
        ratio = batched.texts_per_s / naive.texts_per_s
        print(f"CPU time per text naive/batched: {naive.cpu_ms_per_text / batched.cpu_ms_per_text:.2f}x")
        print(
            f"throughput ratio batched/naive: {ratio:.2f}x (target >= {TARGET_RATIO:.0f}x:"
            f" {'met' if ratio >= TARGET_RATIO else 'NOT met'}); batched p99 {batched.p99_ms:.0f} ms at"
            f" {args.clients} clients (target < {TARGET_P99_MS:.0f} ms:"
            f" {'met' if batched.p99_ms < TARGET_P99_MS else 'NOT met'})"
        )


def _median(results: Sequence[Result]) -> Result:
    fields = zip(
        *((r.texts_per_s, r.p50_ms, r.p99_ms, r.passes, r.mean_batch, r.cpu_ms_per_text) for r in results), strict=True
    )
    return Result(*(float(np.median(values)) for values in fields))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=["queries", "products", "both"], default="both")
    parser.add_argument("--requests", type=int, default=480, help="timed requests per mode and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of naive then batched; medians compared")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument(
        "--precision", choices=["auto", "float32", "float16", "bfloat16"], default=EncoderSettings().precision
    )
    parser.add_argument("--max-batch", type=int, default=EncoderSettings().max_batch_size)
    parser.add_argument("--max-wait-ms", type=float, default=EncoderSettings().max_wait_ms)
    asyncio.run(main(parser.parse_args()))
