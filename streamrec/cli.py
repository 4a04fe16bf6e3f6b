"""``streamrec <command>``: one entry point for every process and tool.

Every setting is an environment variable (``STREAMREC_...``); the few flags
here are shortcuts that set the same variables, so each flag's fallback is
the variable named in its help.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

# Models load from local files only; never reach for a hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

_SHARED_FLAGS = {
    "--kafka": ("STREAMREC_KAFKA_BOOTSTRAP", "Kafka bootstrap servers"),
    "--milvus-uri": ("STREAMREC_MILVUS_URI", "Milvus Lite file or Milvus server URI"),
    "--api-port": ("STREAMREC_API_PORT", "API port"),
}


def _add_shared(parser: argparse.ArgumentParser) -> None:
    for flag, (env, text) in _SHARED_FLAGS.items():
        parser.add_argument(flag, default=None, help=f"{text} (env {env}, default: settings)")


def _export_flags(args: argparse.Namespace) -> None:
    """Flags override the environment the settings objects read."""
    for flag, (env, _) in _SHARED_FLAGS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        if value is not None:
            os.environ[env] = str(value)


def _cmd_worker(args: argparse.Namespace) -> int:
    from streamrec.runtime import run_worker

    run_worker(with_api=False)
    return 0


def _cmd_all_in_one(args: argparse.Namespace) -> int:
    from streamrec.runtime import run_worker

    run_worker(with_api=True)
    return 0


def _cmd_api(args: argparse.Namespace) -> int:
    from streamrec.runtime import run_api

    run_api()
    return 0


def _cmd_encoder(args: argparse.Namespace) -> int:
    from streamrec.runtime import run_encoder

    for env, value in (("STREAMREC_ENCODER_HOST", args.host), ("STREAMREC_ENCODER_PORT", args.port)):
        if value is not None:
            os.environ[env] = str(value)
    run_encoder()
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from streamrec.demo import run_demo

    return run_demo(products=args.products, keep_running=args.keep_running, state_dir=Path(args.state_dir))


def _cmd_topics(args: argparse.Namespace) -> int:
    from streams.settings import StreamSettings
    from streams.topics import ensure_topics

    created = ensure_topics(StreamSettings())
    print("created: " + (", ".join(created) if created else "nothing (all topics exist)"))
    return 0


def _cmd_schemas(args: argparse.Namespace) -> int:
    from streams.events import EVENT_KINDS, json_schema

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for kind in EVENT_KINDS:
        path = out / f"{kind}.schema.json"
        path.write_text(json.dumps(json_schema(kind), indent=2, sort_keys=True) + "\n")
        print(path)
    return 0


def _cmd_dlq_inspect(args: argparse.Namespace) -> int:
    from streams.dlq_commands import inspect_command
    from streams.settings import StreamSettings

    return inspect_command(
        StreamSettings(),
        reasons=args.reason,
        source_topic=args.source_topic,
        since=args.since,
        limit=args.limit,
        as_json=args.json,
        out=sys.stdout,
        err=sys.stderr,
    )


def _cmd_dlq_replay(args: argparse.Namespace) -> int:
    from streams.dlq_commands import replay_command
    from streams.settings import StreamSettings

    return replay_command(
        StreamSettings(),
        reasons=args.reason,
        source_topic=args.source_topic,
        since=args.since,
        limit=args.limit,
        dry_run=args.dry_run,
        yes=args.yes,
        stdin=sys.stdin,
        out=sys.stdout,
        err=sys.stderr,
    )


def _cmd_evaluate(args: argparse.Namespace) -> int:
    # The replay asks one list at a time, and each list's matrix products
    # are small (1,682 x 384 for MovieLens): a BLAS thread pool only spins
    # against the replay's own threads. On 2 shared cores it tripled the
    # ranker's p99 (60 ms against 25 ms). Read when numpy loads, so set here.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from streamrec.evaluation.command import EvaluateOptions, evaluate

    options = EvaluateOptions(
        dataset=args.dataset,
        events=Path(args.events) if args.events else None,
        catalog=Path(args.catalog) if args.catalog else None,
        limit=args.limit,
        k=args.k,
        seed=args.seed,
        out=Path(args.out),
        encoder=args.encoder,
        methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
        via_kafka=args.via_kafka,
        baselines=None if args.baselines == "all" else tuple(b.strip() for b in args.baselines.split(",") if b.strip()),
    )
    evaluate(options)
    return 0


def _add_evaluate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # A run's choices, not deployment settings: no environment fallbacks.
    evaluate_text = "prequential replay of real shopper events: streamrec against baselines, with a report"
    evaluate = commands.add_parser("evaluate", help=evaluate_text, description=evaluate_text)
    evaluate.add_argument(
        "--dataset", choices=("movielens", "csv"), default="movielens", help="MovieLens-100k, or your own CSV files"
    )
    evaluate.add_argument("--events", default=None, help="events CSV: user,item,timestamp,type (--dataset csv)")
    evaluate.add_argument("--catalog", default=None, help="optional catalog CSV: item,title,category,price")
    evaluate.add_argument("--limit", type=int, default=None, help="replay only the first N events in time order")
    evaluate.add_argument("--k", type=int, default=20, help="list length asked for before each purchase (default 20)")
    evaluate.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    evaluate.add_argument("--out", default="results/evaluate", help="report folder (default results/evaluate)")
    evaluate.add_argument(
        "--encoder",
        choices=("model", "hashing"),
        default="model",
        help="product vectors from the configured text model (STREAMREC_ENCODER_MODEL) or a fast hashing encoder",
    )
    evaluate.add_argument(
        "--methods",
        default="streamrec,content",
        help="streamrec's lists to measure, comma separated: streamrec, content, streamrec-blend "
        "(default: the first two)",
    )
    evaluate.add_argument(
        "--baselines",
        default="all",
        help="baselines to run beside streamrec, comma separated (popularity, decayed-popularity, cooccurrence, "
        "cooccurrence-cosine), or 'all' (default) or 'none'",
    )
    evaluate.add_argument(
        "--via-kafka",
        action="store_true",
        help="replay through a local broker, worker and API (first 500 events unless --limit); slower, same protocol",
    )
    evaluate.set_defaults(run=_cmd_evaluate)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``streamrec``."""
    parser = argparse.ArgumentParser(prog="streamrec", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default=None, help="log level (env STREAMREC_LOG_LEVEL, default info)")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        _add_shared(sub)
        return sub

    command("worker", "run a stream worker (needs a Milvus server to share with the API)").set_defaults(run=_cmd_worker)
    command("api", "run the HTTP API alone (needs a Milvus server)").set_defaults(run=_cmd_api)
    command("all-in-one", "run worker and API in one process (Milvus Lite default)").set_defaults(run=_cmd_all_in_one)
    encoder = command("encoder", "run the encoder HTTP service (dynamic batching; CUDA in half precision if present)")
    encoder.add_argument("--host", default=None, help="listen address (env STREAMREC_ENCODER_HOST, default 127.0.0.1)")
    encoder.add_argument(
        "--port", type=int, default=None, help="listen port (env STREAMREC_ENCODER_PORT, default 8090)"
    )
    encoder.set_defaults(run=_cmd_encoder)
    demo = command("demo", "start Kafka, Milvus Lite, worker and API; replay shoppers; show results adapt")
    demo.add_argument(
        "--products",
        type=int,
        default=int(os.environ.get("STREAMREC_DEMO_PRODUCTS", "400")),
        help="catalog size (env STREAMREC_DEMO_PRODUCTS, default 400)",
    )
    demo.add_argument(
        "--keep-running",
        action="store_true",
        default=os.environ.get("STREAMREC_DEMO_KEEP_RUNNING", "") == "1",
        help="leave the system up after the demo until Ctrl-C (env STREAMREC_DEMO_KEEP_RUNNING=1)",
    )
    demo.add_argument(
        "--state-dir",
        default=os.environ.get("STREAMREC_DEMO_DIR", ".streamrec-demo"),
        help="where the demo keeps broker and Milvus data (env STREAMREC_DEMO_DIR)",
    )
    demo.set_defaults(run=_cmd_demo)
    _add_evaluate(commands)
    command("topics", "create the Kafka topics of the contract").set_defaults(run=_cmd_topics)
    schemas = command("schemas", "write the JSON Schemas of the events")
    schemas.add_argument("--out", default="streams/schemas", help="output directory (default streams/schemas)")
    schemas.set_defaults(run=_cmd_schemas)
    # `command()` adds the shared flags to the parser it makes; here they belong on the leaves
    # (a value given on `dlq` itself would be reset by the leaf's default), so
    # `streamrec dlq inspect --kafka HOST:PORT` works.
    dlq_text = "inspect and replay the dead-letter topic"
    dlq_commands = commands.add_parser("dlq", help=dlq_text, description=dlq_text).add_subparsers(
        dest="dlq_command", required=True
    )
    inspect_text = "print dead letters, one a line, then a count by reason"
    dlq_inspect = dlq_commands.add_parser("inspect", help=inspect_text, description=inspect_text)
    dlq_inspect.add_argument("--json", action="store_true", help="JSON lines (key and value base64 when not UTF-8)")
    dlq_inspect.set_defaults(run=_cmd_dlq_inspect)
    replay_text = "send dead letters back to their source topics (after a fix), waiting for every ack"
    dlq_replay = dlq_commands.add_parser("replay", help=replay_text, description=replay_text)
    dlq_replay.add_argument("--dry-run", action="store_true", help="show what would be replayed; send nothing")
    dlq_replay.add_argument("--yes", action="store_true", help="do not ask (required when stdin is not a terminal)")
    dlq_replay.set_defaults(run=_cmd_dlq_replay)
    # Filters pick letters for one run, so they have no environment fallback.
    for sub in (dlq_inspect, dlq_replay):
        _add_shared(sub)
        sub.add_argument("--reason", action="append", default=None, help="only this reason (repeatable)")
        sub.add_argument("--source-topic", default=None, help="only letters from this topic")
        sub.add_argument(
            "--since",
            default=None,
            help="only letters written at or after (ISO-8601, or epoch ms; below 1e11 read as seconds)",
        )
        sub.add_argument("--limit", type=int, default=None, help="at most this many letters")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``streamrec`` console script."""
    args = build_parser().parse_args(argv)
    _export_flags(args)
    level = args.log_level or os.environ.get("STREAMREC_LOG_LEVEL", "info")
    os.environ["STREAMREC_LOG_LEVEL"] = level
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # kafka-python logs every connection at INFO; keep its warnings only.
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
