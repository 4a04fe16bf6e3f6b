"""The evaluation datasets: MovieLens-100k from the recbole wheel, and a shop's CSV logs."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from streamrec.errors import StreamrecError
from streamrec.evaluation.data import (
    CatalogItem,
    Dataset,
    DatasetError,
    Interaction,
    _recbole_file,
    csv_events,
    movielens_100k,
)

ML_DIR = "recbole/dataset_example/ml-100k"


def raw_inter_rows() -> list[tuple[str, str, int, int]]:
    """(user, item, rating, timestamp s) of every line of the shipped .inter file, read independently."""
    path = Path(str(importlib.metadata.distribution("recbole").locate_file(f"{ML_DIR}/ml-100k.inter")))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "user_id:token\titem_id:token\trating:float\ttimestamp:float"
    return [(u, i, int(r), int(t)) for u, i, r, t in (line.split("\t") for line in lines[1:])]


@pytest.fixture(scope="module")
def movielens() -> Dataset:
    """The whole of MovieLens-100k (about a third of a second)."""
    return movielens_100k()


def test_movielens_slice_is_the_first_interactions_in_time_order() -> None:
    """limit=500 keeps the 500 earliest ratings (ties in file order), ratings 4-5 as purchases, seconds as ms."""
    raw = sorted(raw_inter_rows(), key=lambda row: row[3])  # sorted() is stable, like the loader
    expected = [
        Interaction(user, item, ts * 1000, "purchase" if rating >= 4 else "click")
        for user, item, rating, ts in raw[:500]
    ]
    dataset = movielens_100k(limit=500)
    assert dataset.interactions == expected
    assert [i.ts_ms for i in dataset.interactions] == sorted(i.ts_ms for i in dataset.interactions)
    assert {i.kind for i in dataset.interactions} == {"click", "purchase"}


def test_movielens_maps_known_raw_lines(movielens: Dataset) -> None:
    """The file's first lines (196 rated 242 a 3; 22 rated 377 a 1) are clicks; a 4 or 5 is a purchase."""
    by_pair = {(i.user_id, i.item_id): i for i in movielens.interactions}
    assert by_pair["196", "242"] == Interaction("196", "242", 881_250_949_000, "click")
    assert by_pair["22", "377"] == Interaction("22", "377", 878_887_116_000, "click")
    for user, item, rating, _ in raw_inter_rows()[:200]:
        assert by_pair[user, item].kind == ("purchase" if rating >= 4 else "click")


def test_movielens_has_every_user_rating_and_movie(movielens: Dataset) -> None:
    """943 users, 100000 interactions, 1682 movies as products titled and filed under their first genre."""
    assert movielens.name == "ml-100k"
    assert len(movielens.interactions) == 100_000
    assert len({i.user_id for i in movielens.interactions}) == 943
    assert len(movielens.catalog) == 1682
    assert movielens.catalog["1"] == CatalogItem("1", "Toy Story", "Animation", 0.0)
    assert movielens.catalog["2"].category == "Action"  # "Action Adventure Thriller"
    assert all(item.category for item in movielens.catalog.values())
    assert {i.item_id for i in movielens.interactions} <= movielens.catalog.keys()


@pytest.mark.parametrize(
    ("package", "name", "needle"),
    [
        ("streamrec-no-such-package", "ml-100k.inter", "not installed"),
        ("recbole", "ml-100k.missing", "missing"),
    ],
)
def test_missing_movielens_says_how_to_install_it(package: str, name: str, needle: str) -> None:
    """Without recbole or one of its files the error says to install the pinned wheel without dependencies."""
    with pytest.raises(DatasetError, match=needle) as caught:
        _recbole_file(name, package=package)
    assert "pip install --no-deps recbole==1.2.1" in str(caught.value)
    assert isinstance(caught.value, StreamrecError)
    assert not caught.value.retriable


def write(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` and return the path."""
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_events_reads_aliases_all_time_formats_and_a_catalog(tmp_path: Path) -> None:
    """Aliased columns, s/ms/ISO times and type synonyms become sorted interactions; the catalog is completed."""
    events = write(
        tmp_path / "shop-logs.csv",
        "user_id,item_id,ts,event_type\n"
        "u1,shoe,1767225602,View\n"  # epoch seconds
        "u2,bag,1767225601000,BUY\n"  # epoch ms (> 1e11)
        "\n"
        "u1,hat,2026-01-01T00:00:00,order\n"  # naive ISO is UTC
        "u3,shoe,2026-01-01T01:00:01+01:00,click\n"  # = 00:00:01Z, ties the bag purchase, comes after it
        "u3,belt,1767225600.5,purchase\n",
    )
    catalog = write(
        tmp_path / "catalog.csv",
        "item,title,category,price\nshoe,Red running shoe,shoes,49.5\nbag,Travel bag,bags,\nhat,,,\n",
    )
    dataset = csv_events(events, catalog)
    assert dataset.name == "shop-logs"
    assert dataset.interactions == [
        Interaction("u1", "hat", 1_767_225_600_000, "purchase"),
        Interaction("u3", "belt", 1_767_225_600_500, "purchase"),
        Interaction("u2", "bag", 1_767_225_601_000, "purchase"),
        Interaction("u3", "shoe", 1_767_225_601_000, "click"),
        Interaction("u1", "shoe", 1_767_225_602_000, "click"),
    ]
    assert dataset.catalog == {
        "shoe": CatalogItem("shoe", "Red running shoe", "shoes", 49.5),
        "bag": CatalogItem("bag", "Travel bag", "bags", 0.0),
        "hat": CatalogItem("hat", "hat", "unknown", 0.0),
        "belt": CatalogItem("belt", "belt", "unknown", 0.0),  # not in the catalog file
    }


def test_csv_events_without_catalog_synthesises_one(tmp_path: Path) -> None:
    """Canonical column names work, and every item gets a placeholder entry when there is no catalog."""
    events = write(tmp_path / "e.csv", "timestamp,type,user,item\n1767225600,click,u1,p1\n")
    assert csv_events(events).catalog == {"p1": CatalogItem("p1", "p1", "unknown", 0.0)}


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        ("user,item,timestamp,type\nu1,p1,1767225600,click\nu1,p2,1767225601,like\n", 3, "type"),
        ("user,item,timestamp,type\nu1,p1,yesterday,click\n", 2, "timestamp"),
        ("user,item,timestamp,type\nu1,p1,nan,click\n", 2, "timestamp"),
        ("user,item,timestamp,type\nu1,p1,-5,click\n", 2, "timestamp"),
        ("user,item,timestamp,type\nu1,p1,1767225600\n", 2, "type"),  # a short row
        ("user,item,timestamp,type\n,p1,1767225600,click\n", 2, "user"),
        ("user,product,timestamp,type\nu1,p1,1767225600,click\n", 1, "item"),  # no item column
        ("", 1, "user"),
    ],
)
def test_bad_event_rows_name_file_line_and_field(tmp_path: Path, text: str, line: int, field: str) -> None:
    """An unknown type, unreadable time, missing value or missing column is a DatasetError naming where it is."""
    events = write(tmp_path / "events.csv", text)
    with pytest.raises(DatasetError) as caught:
        csv_events(events)
    assert caught.value.context["path"] == str(events)
    assert caught.value.context["line"] == line
    assert caught.value.context["field"] == field
    assert "events.csv" in str(caught.value)
    assert f"line={line}" in str(caught.value)
    assert f"field={field!r}" in str(caught.value)


def test_bad_catalog_price_names_the_catalog_line(tmp_path: Path) -> None:
    """A price that is not a number is an error at its catalog line, not a silent 0.0."""
    events = write(tmp_path / "events.csv", "user,item,timestamp,type\nu1,p1,1767225600,click\n")
    catalog = write(tmp_path / "catalog.csv", "item_id,title,category,price\np1,One,misc,1.0\np2,Two,misc,cheap\n")
    with pytest.raises(DatasetError) as caught:
        csv_events(events, catalog)
    assert caught.value.context == {"path": str(catalog), "line": 3, "field": "price", "value": "cheap"}
