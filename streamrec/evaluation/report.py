"""The evaluation's output: a terminal table, and a Markdown report with its JSON numbers and a chart."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from streamrec.evaluation.metrics import DECILES, Evaluation

OURS = "streamrec"
# (summary key, column heading, format)
_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("requests", "requests", "{:.0f}"),
    ("hit_rate@10", "hit@10", "{:.4f}"),
    ("ndcg@10", "ndcg@10", "{:.4f}"),
    ("recall@20", "recall@20", "{:.4f}"),
    ("mrr", "mrr", "{:.4f}"),
    ("coverage", "coverage", "{:.4f}"),
    ("latency_p50_ms", "p50 ms", "{:.2f}"),
    ("latency_p99_ms", "p99 ms", "{:.2f}"),
)
_COLD = "Cold shoppers (fewer than 5 prior events)"
PROTOCOL = (
    "Prequential replay: the interactions are replayed once, in event-time order. "
    "Before each purchase, rank all products not yet interacted with; then apply the event. "
    "Every method sees the same stream and learns only from events before the one it is asked about. "
    "A request counts as cold when the shopper had fewer than 5 prior events."
)


@dataclass(frozen=True, slots=True)
class ReportFiles:
    """Where ``write_report`` put its three files."""

    markdown: Path
    results: Path
    chart: Path


def vs_best_baseline(evaluation: Evaluation, summary: Callable[[str], dict[str, float]]) -> tuple[float, str] | None:
    """streamrec's ndcg@10 over the best other method's, and that method; None without both or at zero.

    >>> from streamrec.evaluation.metrics import Request
    >>> evaluation = Evaluation(catalog_size=3)
    >>> for method, ranked in [("streamrec", ("a",)), ("popularity", ("b", "c", "a"))]:
    ...     evaluation.add(method, Request(0, 1, "a", ranked, cold=False, latency_s=0.0))
    >>> vs_best_baseline(evaluation, evaluation.overall)
    (2.0, 'popularity')
    """
    others = [method for method in evaluation.methods if method != OURS]
    if OURS not in evaluation.methods or not others:
        return None
    best = max(others, key=lambda method: summary(method)["ndcg@10"])
    best_ndcg = summary(best)["ndcg@10"]
    return (summary(OURS)["ndcg@10"] / best_ndcg, best) if best_ndcg > 0 else None


def render_table(evaluation: Evaluation, methods_order: Sequence[str] | None = None) -> str:
    """Fixed-width tables of every metric per method: overall, then for cold shoppers."""
    methods = list(methods_order if methods_order is not None else evaluation.methods)
    width = max([len("method"), *map(len, methods)])
    blocks = []
    for name, summary in _sections(evaluation):
        header, *rows = _cells(methods, summary)
        lines = [name, _fixed(header, width), "-" * len(_fixed(header, width)), *(_fixed(row, width) for row in rows)]
        if (ratio := vs_best_baseline(evaluation, summary)) is not None:
            lines.append(f"{OURS} ndcg@10 vs best baseline ({ratio[1]}): {ratio[0]:.2f}x")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def write_report(
    evaluation: Evaluation, out_dir: Path, *, title: str, command: str, dataset: str, seed: int, elapsed_s: float
) -> ReportFiles:
    """Write ``report.md``, ``results.json`` and ``ndcg_over_stream.png`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(out_dir / "report.md", out_dir / "results.json", out_dir / "ndcg_over_stream.png")
    results = {
        "title": title,
        "dataset": dataset,
        "command": command,
        "seed": seed,
        "elapsed_s": elapsed_s,
        "catalog_size": evaluation.catalog_size,
        "methods": {
            method: {
                "overall": evaluation.overall(method),
                "cold": evaluation.cold(method),
                "by_decile": evaluation.by_decile(method),
            }
            for method in evaluation.methods
        },
    }
    # allow_nan=False: a NaN would be a bug upstream, and it is not JSON.
    files.results.write_text(json.dumps(results, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    run = [f"# {title}", "", f"- Dataset: {dataset}", f"- Command: `{command}`", f"- Seed: {seed}"]
    run.append(f"- Elapsed: {elapsed_s:.1f} s")
    files.markdown.write_text(_markdown(evaluation, run, files.chart.name), encoding="utf-8")
    _chart(evaluation, files.chart)
    return files


def _sections(evaluation: Evaluation) -> tuple[tuple[str, Callable[[str], dict[str, float]]], ...]:
    return (("Overall", evaluation.overall), (_COLD, evaluation.cold))


def _cells(methods: Sequence[str], summary: Callable[[str], dict[str, float]]) -> list[list[str]]:
    """The header row, then one formatted row per method."""
    rows = [["method", *(heading for _, heading, _ in _COLUMNS)]]
    for method in methods:
        values = summary(method)
        rows.append([method, *(fmt.format(values[key]) for key, _, fmt in _COLUMNS)])
    return rows


def _fixed(row: Sequence[str], width: int) -> str:
    return f"{row[0]:<{width}}" + "".join(f"  {cell:>9}" for cell in row[1:])


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _markdown(evaluation: Evaluation, run: list[str], chart_name: str) -> str:
    """The report: how it was run, how the protocol works, then the tables and the chart."""
    lines = [*run, "", "## Protocol", "", PROTOCOL]
    for name, summary in _sections(evaluation):
        header, *rows = _cells(evaluation.methods, summary)
        lines += ["", f"## {name}", "", _md_row(header), _md_row(["---"] * len(header)), *map(_md_row, rows)]
        if (ratio := vs_best_baseline(evaluation, summary)) is not None:
            lines += ["", f"{OURS} ndcg@10 vs best baseline ({ratio[1]}): **{ratio[0]:.2f}x**"]
    lines += ["", "## NDCG@10 over the stream, by decile", ""]
    lines.append(_md_row(["method", *(f"d{decile + 1}" for decile in range(DECILES))]))
    lines.append(_md_row(["---"] * (DECILES + 1)))
    for method in evaluation.methods:
        lines.append(_md_row([method, *(f"{d['ndcg@10']:.4f}" for d in evaluation.by_decile(method))]))
    lines += ["", f"![NDCG@10 and HitRate@10 over the stream]({chart_name})", ""]
    return "\n".join(lines)


def _chart(evaluation: Evaluation, path: Path) -> None:
    """NDCG@10 and HitRate@10 per decile, one line per method."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    figure, (ndcg_axes, hit_axes) = plt.subplots(2, 1, sharex=True, figsize=(8, 6))
    try:
        deciles = range(1, DECILES + 1)
        for method in evaluation.methods:
            by_decile = evaluation.by_decile(method)
            ndcg_axes.plot(deciles, [d["ndcg@10"] for d in by_decile], marker="o", label=method)
            hit_axes.plot(deciles, [d["hit_rate@10"] for d in by_decile], marker="o", label=method)
        ndcg_axes.set_ylabel("NDCG@10")
        hit_axes.set_ylabel("HitRate@10")
        hit_axes.set_xlabel("decile of the stream (time order)")
        hit_axes.set_xticks(list(deciles))
        ndcg_axes.set_title("Prequential replay: quality over the stream")
        if evaluation.methods:  # an empty legend warns
            ndcg_axes.legend()
            hit_axes.legend()
        figure.tight_layout()
        figure.savefig(path, dpi=100)
    finally:
        plt.close(figure)
