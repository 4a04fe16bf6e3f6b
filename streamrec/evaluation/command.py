"""``streamrec evaluate``: load a data set, replay it through streamrec and the baselines, report."""

from __future__ import annotations

import asyncio
import random
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from encoders.runner import AsyncEncoder, Embedder
from encoders.text import HashingTextEncoder
from online_learning.settings import LearningSettings
from ranker.settings import RankerSettings
from streamrec.evaluation.baselines import MAX_DENSE_ITEMS, Baseline, CoOccurrence, DecayedPopularity, Popularity
from streamrec.evaluation.data import Dataset, csv_events, movielens_100k
from streamrec.evaluation.replay import ReplayResult, StreamrecReplay, replay
from streamrec.evaluation.report import render_table, write_report
from streams.settings import StreamSettings


@dataclass(frozen=True, slots=True)
class EvaluateOptions:
    """What to replay and where the report goes."""

    dataset: str = "movielens"  # or "csv"
    events: Path | None = None
    catalog: Path | None = None
    limit: int | None = None
    k: int = 20
    seed: int = 0
    out: Path = Path("results/evaluate")
    encoder: str = "model"  # "model": the configured text encoder; "hashing": fast, no torch model
    # streamrec's own lists: in full, content only (the shopper vector's
    # nearest products), and optionally in full with the fixed blend.
    methods: tuple[str, ...] = ("streamrec", "content")
    # Through a local broker, worker and API instead of in this process.
    via_kafka: bool = False
    # Baselines by name; all of them by default (a long replay can be split
    # across processes, one with the baselines).
    baselines: tuple[str, ...] | None = None


# The live replay waits for every event to show over HTTP: a slice, by default.
VIA_KAFKA_LIMIT = 500


def load(options: EvaluateOptions) -> Dataset:
    """The data set the options name."""
    if options.dataset == "csv":
        if options.events is None:
            raise ValueError("--dataset csv needs --events FILE")
        dataset = csv_events(options.events, options.catalog)
        if options.limit is not None:
            dataset = Dataset(dataset.name, dataset.interactions[: options.limit], dataset.catalog)
        return dataset
    limit = options.limit if options.limit is not None or not options.via_kafka else VIA_KAFKA_LIMIT
    return movielens_100k(limit)


def make_encoder(kind: str) -> Embedder:
    """The configured text encoder, or a hashing one (deterministic, no model) for quick runs and tests."""
    if kind == "hashing":
        return AsyncEncoder(HashingTextEncoder(dim=64))
    from encoders.registry import load_model
    from encoders.settings import EncoderSettings

    return AsyncEncoder(load_model(EncoderSettings()).encoder)


def baselines(dataset: Dataset, half_life_ms: float) -> list[Baseline]:
    """Every baseline that fits the catalog (co-occurrence is dense: skipped past ``MAX_DENSE_ITEMS``)."""
    items = sorted(dataset.catalog)
    chosen: list[Baseline] = [Popularity(items), DecayedPopularity(items, half_life_ms)]
    if len(items) <= MAX_DENSE_ITEMS:
        chosen += [CoOccurrence(items, cosine=False), CoOccurrence(items, cosine=True)]
    return chosen


class Bar:
    """A progress bar on a terminal, a line every 10% elsewhere."""

    def __init__(self, out: TextIO, label: str) -> None:
        self._out = out
        self._label = label
        self._tty = out.isatty()
        self._shown = -1
        self._started = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        percent = done * 100 // max(total, 1)
        step = percent if self._tty else percent // 10 * 10
        if step == self._shown:
            return
        self._shown = step
        rate = done / max(time.perf_counter() - self._started, 1e-9)
        filled = "#" * (percent // 4)
        line = f"{self._label} [{filled:<25}] {percent:3d}% {done}/{total} events, {rate:,.0f}/s"
        self._out.write(f"\r{line}" if self._tty else f"{line}\n")
        if self._tty and done == total:
            self._out.write("\n")
        self._out.flush()


def evaluate(options: EvaluateOptions, out: TextIO = sys.stdout, command: str = "") -> ReplayResult:
    """Run the replay and write the report; returns what was measured."""
    random.seed(options.seed)
    np.random.seed(options.seed)
    dataset = load(options)
    ranker = RankerSettings()
    stream = StreamSettings()
    out.write(
        f"{dataset.name}: {len(dataset.interactions):,} events, {len(dataset.catalog):,} products, "
        f"{sum(e.kind == 'purchase' for e in dataset.interactions):,} purchases to rank before\n"
    )
    chosen = [
        b
        for b in baselines(dataset, ranker.covisit_half_life_s * 1000)
        if options.baselines is None or b.name in options.baselines
    ]
    if options.via_kafka:
        from streamrec.evaluation.live import METHOD, live_system

        out.write("starting a local Kafka broker and streamrec all-in-one (the live system)\n")
        with live_system() as live:
            result = asyncio.run(
                replay(dataset, live, chosen, k=options.k, methods=(METHOD,), progress=Bar(out, "replay via Kafka"))
            )
    else:
        encoder = make_encoder(options.encoder)
        try:
            streamrec = StreamrecReplay(
                encoder,
                ranker=ranker,
                learning=LearningSettings(),
                profile_half_life_ms=stream.profile_half_life_s * 1000,
            )
            result = asyncio.run(
                replay(dataset, streamrec, chosen, k=options.k, methods=options.methods, progress=Bar(out, "replay"))
            )
        finally:
            encoder.close()
    out.write(render_table(result.evaluation, result.methods) + "\n")
    files = write_report(
        result.evaluation,
        options.out,
        title=f"streamrec evaluate: {dataset.name}",
        command=command or "streamrec evaluate " + shlex.join(sys.argv[2:]),
        dataset=f"{dataset.name} ({len(dataset.interactions):,} events)",
        seed=options.seed,
        elapsed_s=result.elapsed_s,
    )
    out.write(
        f"model v{result.model_version} after {result.examples_learned:,} examples; "
        f"replayed in {result.elapsed_s:.0f} s\n"
    )
    out.write(f"report: {files.markdown}\nchart: {files.chart}\nnumbers: {files.results}\n")
    return result
