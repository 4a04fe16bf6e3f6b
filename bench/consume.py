"""What the consumption layer alone costs: faust + ``streams.batching.run_batches`` with a handler that does nothing.

Against a bare aiokafka ``getmany`` + ``json.loads`` loop over the same
topic in the same run. The gap between the two is the ceiling faust and the
batching put on any worker, before any of streamrec's own work.

    python bench/consume.py [--events 200000] [--batch 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from streamrec.localkafka import LocalKafka, free_port
from streams.settings import StreamSettings

sys.path.insert(0, str(Path(__file__).parent))
from stream import bare_loop, drain

TOPIC = "consume.events"
PARTITIONS = 4


def serve(bootstrap: str, group: str, batch: int, data_dir: str, port: int) -> None:
    """The faust worker of this bench: one agent, batched by ``run_batches``, decoding each event with json."""
    import faust
    from faust.types import StreamT

    from streams.batching import run_batches

    app = faust.App(
        group,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        autodiscover=False,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        datadir=data_dir,
        web_port=port,
        web_host="127.0.0.1",
        topic_partitions=PARTITIONS,
    )
    topic = app.topic(TOPIC, key_serializer="raw", value_serializer="raw")

    async def handle(events: list[Any]) -> None:
        for event in events:
            json.loads(event.value)

    async def agent(stream: StreamT[Any]) -> AsyncIterator[None]:
        async for _ in run_batches(stream, batch, 0.05, handle):
            yield None

    app.agent(topic, name="consume")(agent)
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


def fill(bootstrap: str, events: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=20, batch_size=512 * 1024)
    now_ms = int(time.time() * 1000)
    for number in range(events):
        user = f"u{number % 10_000}"
        event = {"event_id": f"e{number}", "ts": now_ms, "schema_version": 1, "user_id": user, "product_id": "p1"}
        producer.send(TOPIC, key=user.encode(), value=json.dumps(event).encode())
    producer.flush()
    producer.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--profile", type=Path, help="py-spy the worker for 30 s into this file (raw stacks)")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="streamrec-consume-"))
    kafka = LocalKafka(root / "kafka", free_port())
    kafka.start()
    worker: subprocess.Popen[bytes] | None = None
    try:
        fill(kafka.bootstrap_servers, args.events)
        settings = StreamSettings(kafka_bootstrap=kafka.bootstrap_servers)
        bare = asyncio.run(bare_loop(settings, [TOPIC], args.events))
        command = [sys.executable, __file__, "--serve", kafka.bootstrap_servers, "consume", str(args.batch)]
        command += [str(root / "worker"), str(free_port())]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent.parent), *sys.path])}
        with (root / "worker.log").open("wb") as log:
            worker = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        profiler = None
        if args.profile:
            py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            profiler = subprocess.Popen(
                [
                    py_spy,
                    "record",
                    "--pid",
                    str(worker.pid),
                    "--duration",
                    "30",
                    "--rate",
                    "100",
                    "--nonblocking",
                    "--format",
                    "raw",
                    "--output",
                    str(args.profile),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )
        drained = drain(settings, "consume", [TOPIC], 0, pid=worker.pid)
        if profiler is not None:
            profiler.wait(timeout=90)
        print(
            f"bare getmany + json.loads: {bare:,.0f} events/s\n"
            f"faust + run_batches, handler decoding only: {drained['events_per_s']:,.0f} events/s "
            f"({drained['cpu_us_per_event']:.0f} us of CPU per event); ratio {drained['events_per_s'] / bare:.3f}"
        )
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        kafka.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], int(sys.argv[6]))
        sys.exit(0)
    sys.exit(main())
