"""The evaluation's terminal table and its report files (Markdown, JSON, PNG chart)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamrec.evaluation.metrics import Evaluation, Request
from streamrec.evaluation.report import PROTOCOL, render_table, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HEADINGS = "method requests hit@10 ndcg@10 recall@20 mrr coverage p50 ms p99 ms"


@pytest.fixture
def evaluation() -> Evaluation:
    """streamrec finds the target at rank 1 in every request, popularity at rank 2, over a stream of 10."""
    evaluation = Evaluation(catalog_size=4)
    for index in range(10):
        cold = index < 3
        evaluation.add("popularity", Request(index, 10, "a", ("b", "a"), cold=cold, latency_s=0.001))
        evaluation.add("streamrec", Request(index, 10, "a", ("a", "c"), cold=cold, latency_s=0.004))
    return evaluation


def test_table_lists_methods_metrics_and_ratio_to_best_baseline(evaluation: Evaluation) -> None:
    """Both tables have a row per method in the given order and the ndcg@10 ratio (1 / (1/log2(3)) = 1.58x)."""
    table = render_table(evaluation, ["streamrec", "popularity"])
    overall, cold = table.split("\n\n")
    assert overall.startswith("Overall")
    assert cold.startswith("Cold shoppers")
    for block in (overall, cold):
        lines = block.splitlines()
        assert " ".join(lines[1].split()) == HEADINGS
        assert lines[3].startswith("streamrec")
        assert lines[4].startswith("popularity")
        assert "ndcg@10 vs best baseline (popularity): 1.58x" in lines[5]
        assert len({len(line) for line in lines[1:5]}) == 1  # fixed-width columns
    # popularity: ndcg 1/log2(3) = 0.6309, mrr 0.5, coverage {a, b} = 2/4, 1 ms
    assert " ".join(overall.splitlines()[4].split()) == "popularity 10 1.0000 0.6309 1.0000 0.5000 0.5000 1.00 1.00"
    assert cold.splitlines()[3].split()[1] == "3"  # three cold requests


def test_table_without_streamrec_has_no_ratio(evaluation: Evaluation) -> None:
    """The vs-best-baseline line appears only when a method named streamrec is shown and there is a baseline."""
    only = Evaluation(catalog_size=4)
    only.add("popularity", Request(0, 1, "a", ("a",), cold=False, latency_s=0.0))
    assert "vs best baseline" not in render_table(only, ["popularity"])
    assert render_table(evaluation).index("streamrec") > render_table(evaluation).index("popularity")  # added order


def test_write_report_writes_markdown_json_and_chart(evaluation: Evaluation, tmp_path: Path) -> None:
    """The three files exist; the PNG is a real image; the JSON holds every number; the Markdown has the tables."""
    out_dir = tmp_path / "out"  # created by write_report
    files = write_report(
        evaluation,
        out_dir,
        title="Replay on test data",
        command="streamrec evaluate --dataset test",
        dataset="test",
        seed=7,
        elapsed_s=1.25,
    )
    assert (files.markdown, files.results, files.chart) == (
        out_dir / "report.md",
        out_dir / "results.json",
        out_dir / "ndcg_over_stream.png",
    )

    png = files.chart.read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    assert len(png) > 10_000  # two subplots with lines, labels and legends, not an empty canvas

    results = json.loads(files.results.read_text(encoding="utf-8"))
    assert {key: results[key] for key in ("title", "dataset", "command", "seed", "elapsed_s", "catalog_size")} == {
        "title": "Replay on test data",
        "dataset": "test",
        "command": "streamrec evaluate --dataset test",
        "seed": 7,
        "elapsed_s": 1.25,
        "catalog_size": 4,
    }
    assert list(results["methods"]) == ["popularity", "streamrec"]
    for method, numbers in results["methods"].items():
        assert numbers == {
            "overall": evaluation.overall(method),
            "cold": evaluation.cold(method),
            "by_decile": evaluation.by_decile(method),
        }

    markdown = files.markdown.read_text(encoding="utf-8")
    assert markdown.startswith("# Replay on test data\n")
    for needle in (
        "- Dataset: test",
        "- Command: `streamrec evaluate --dataset test`",
        "- Seed: 7",
        "- Elapsed: 1.2 s",  # 1.25 rounds half to even
        PROTOCOL,
        "## Overall",
        "## Cold shoppers (fewer than 5 prior events)",
        "| method | requests | hit@10 | ndcg@10 | recall@20 | mrr | coverage | p50 ms | p99 ms |",
        "| popularity | 10 | 1.0000 | 0.6309 | 1.0000 | 0.5000 | 0.5000 | 1.00 | 1.00 |",
        "| streamrec | 3 | 1.0000 | 1.0000 | 1.0000 | 1.0000 | 0.5000 | 4.00 | 4.00 |",  # cold table
        "streamrec ndcg@10 vs best baseline (popularity): **1.58x**",
        "| method | d1 | d2 | d3 | d4 | d5 | d6 | d7 | d8 | d9 | d10 |",
        "| popularity | " + " | ".join(["0.6309"] * 10) + " |",
        "![NDCG@10 and HitRate@10 over the stream](ndcg_over_stream.png)",
    ):
        assert needle in markdown
    assert "before each purchase, rank all products not yet interacted with; then apply the event" in markdown.lower()


def test_write_report_with_no_methods_still_writes_files(tmp_path: Path) -> None:
    """An evaluation with no requests yet gives empty tables and an empty chart, without warnings."""
    files = write_report(
        Evaluation(catalog_size=0), tmp_path, title="t", command="c", dataset="d", seed=0, elapsed_s=0.0
    )
    assert files.chart.read_bytes().startswith(PNG_SIGNATURE)
    assert json.loads(files.results.read_text(encoding="utf-8"))["methods"] == {}
