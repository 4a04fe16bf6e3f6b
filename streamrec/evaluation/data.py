"""What the evaluation replays: interactions, a catalog, and the two places they come from.

``movielens_100k`` reads the MovieLens-100k files shipped inside the ``recbole``
wheel; ``csv_events`` reads a shop's own event log. Both give a :class:`Dataset`
whose interactions are in event-time order.
"""

from __future__ import annotations

import csv
import importlib.metadata
import math
from collections.abc import Iterator, Sequence, Set
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Literal

from streamrec.errors import StreamrecError

InteractionKind = Literal["click", "purchase"]

_PACKAGE = "recbole"
_ML_DIR = "recbole/dataset_example/ml-100k"
_INSTALL_HINT = "run `pip install --no-deps recbole==1.2.1` (see deploy/data-packages.txt)"
# MovieLens has ratings, not orders: a 4 or 5 is the "bought it" signal, anything lower a look.
_PURCHASE_MIN_RATING = 4.0
# Epoch values above this are milliseconds: 1e11 ms is March 1973 and 1e11 s the year 5138,
# so no real timestamp is ambiguous (the same rule as streams.events.parse_ts).
_MS_CUTOFF = 100_000_000_000
_KINDS: dict[str, InteractionKind] = {
    "click": "click",
    "view": "click",
    "purchase": "purchase",
    "buy": "purchase",
    "order": "purchase",
}
# Each field and the header names accepted for it, canonical name first.
_EVENT_COLUMNS: dict[str, tuple[str, ...]] = {
    "user": ("user", "user_id"),
    "item": ("item", "item_id"),
    "timestamp": ("timestamp", "ts"),
    "type": ("type", "event_type"),
}
_CATALOG_COLUMNS: dict[str, tuple[str, ...]] = {
    "item": ("item", "item_id"),
    "title": ("title",),
    "category": ("category",),
    "price": ("price",),
}


class DatasetError(StreamrecError):
    """A dataset is not installed, or a file or row in it cannot be read; never retriable."""


@dataclass(frozen=True, slots=True)
class Interaction:
    """One shopper event: a click or a purchase of an item at an event time."""

    user_id: str
    item_id: str
    ts_ms: int  # event time, epoch milliseconds
    kind: InteractionKind


@dataclass(frozen=True, slots=True)
class CatalogItem:
    """A product as the evaluation sees it."""

    item_id: str
    title: str
    category: str  # first genre / category
    price: float  # 0.0 when unknown


@dataclass(frozen=True, slots=True)
class Dataset:
    """Interactions in (event time, file order) order, and a catalog covering every item in them."""

    name: str
    interactions: list[Interaction]
    catalog: dict[str, CatalogItem]


def movielens_100k(limit: int | None = None) -> Dataset:
    """MovieLens-100k as shop events: a rating of 4 or 5 is a purchase, a lower one a click.

    ``limit`` keeps the first ``limit`` interactions in time order; the catalog stays whole.
    """
    inter_path, item_path = _recbole_file("ml-100k.inter"), _recbole_file("ml-100k.item")
    catalog: dict[str, CatalogItem] = {}
    for _, (item_id, title, genres) in _tsv(item_path, ("item_id", "movie_title", "class")):
        catalog[item_id] = CatalogItem(item_id, title, (genres.split() or ["unknown"])[0], 0.0)
    interactions: list[Interaction] = []
    for line, (user_id, item_id, rating, ts) in _tsv(inter_path, ("user_id", "item_id", "rating", "timestamp")):
        try:
            kind: InteractionKind = "purchase" if float(rating) >= _PURCHASE_MIN_RATING else "click"
        except ValueError:
            raise _row_error(inter_path, line, "rating", rating) from None
        try:
            ts_ms = round(float(ts) * 1000)
        except ValueError:
            raise _row_error(inter_path, line, "timestamp", ts) from None
        interactions.append(Interaction(user_id, item_id, ts_ms, kind))
    interactions.sort(key=attrgetter("ts_ms"))  # stable: ties keep file order
    return _dataset("ml-100k", interactions[:limit], catalog)


def csv_events(events_path: Path, catalog_path: Path | None = None) -> Dataset:
    """A shop's own event log (and optional catalog) as a dataset named after the events file.

    Timestamps are epoch seconds, epoch milliseconds or ISO-8601 (naive is UTC); types are
    click/view or purchase/buy/order. The catalog needs an item column; a blank or absent
    title, category or price falls back to the item id, "unknown" and 0.0. A row that does
    not fit raises :class:`DatasetError` naming the file, line and field.
    """
    interactions: list[Interaction] = []
    for line, row in _csv_rows(events_path, _EVENT_COLUMNS):
        try:
            ts_ms = _parse_ts_ms(row["timestamp"])
        except ValueError:
            raise _row_error(events_path, line, "timestamp", row["timestamp"]) from None
        kind = _KINDS.get(row["type"].lower())
        if kind is None:
            raise _row_error(events_path, line, "type", row["type"])
        interactions.append(Interaction(row["user"], row["item"], ts_ms, kind))
    interactions.sort(key=attrgetter("ts_ms"))  # stable: ties keep file order
    catalog: dict[str, CatalogItem] = {}
    if catalog_path is not None:
        for line, row in _csv_rows(catalog_path, _CATALOG_COLUMNS, optional={"title", "category", "price"}):
            try:
                price = float(row["price"]) if row["price"] else 0.0
            except ValueError:
                raise _row_error(catalog_path, line, "price", row["price"]) from None
            item_id = row["item"]
            catalog[item_id] = CatalogItem(item_id, row["title"] or item_id, row["category"] or "unknown", price)
    return _dataset(events_path.stem, interactions, catalog)


def _dataset(name: str, interactions: list[Interaction], catalog: dict[str, CatalogItem]) -> Dataset:
    """Complete the catalog with a placeholder for every item it lacks."""
    for interaction in interactions:
        if interaction.item_id not in catalog:
            catalog[interaction.item_id] = CatalogItem(interaction.item_id, interaction.item_id, "unknown", 0.0)
    return Dataset(name, interactions, catalog)


def _recbole_file(name: str, package: str = _PACKAGE) -> Path:
    """The path of a MovieLens-100k file inside the installed ``recbole`` wheel, never importing it."""
    try:
        distribution = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise DatasetError(f"MovieLens-100k ships with {package}, which is not installed; {_INSTALL_HINT}") from None
    path = Path(str(distribution.locate_file(f"{_ML_DIR}/{name}")))
    if not path.is_file():
        raise DatasetError(f"a MovieLens-100k file is missing; {_INSTALL_HINT}", path=str(path))
    return path


def _tsv(path: Path, fields: Sequence[str]) -> Iterator[tuple[int, tuple[str, ...]]]:
    """(line number, the two or more named fields) of each row of a RecBole atomic file (``name:type`` header)."""
    # Atomic files have no quoting, so str.split is exact, and several times faster than csv.
    lines = path.read_text(encoding="utf-8").splitlines()
    header = [column.split(":", 1)[0] for column in lines[0].split("\t")] if lines else []
    missing = [field for field in fields if field not in header]
    if missing:
        raise DatasetError("a column is missing", path=str(path), line=1, field=missing[0])
    pick = itemgetter(*(header.index(field) for field in fields))
    for number, text in enumerate(lines[1:], start=2):
        row = text.split("\t")
        if len(row) != len(header):
            raise DatasetError("wrong number of fields", path=str(path), line=number, field=fields[0])
        yield number, pick(row)


def _csv_rows(
    path: Path, columns: dict[str, tuple[str, ...]], optional: Set[str] = frozenset()
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, stripped value of each field) of each non-blank row; "" for an absent optional field."""
    # utf-8-sig: spreadsheets often save CSV with a byte-order mark before the header.
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = [name.strip().lower() for name in next(reader, [])]
        indexes = {field: _column(path, header, field, names, field in optional) for field, names in columns.items()}
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            values = {field: row[i].strip() if i is not None and i < len(row) else "" for field, i in indexes.items()}
            for field, value in values.items():
                if not value and field not in optional:
                    raise _row_error(path, reader.line_num, field, value)
            yield reader.line_num, values


def _column(path: Path, header: list[str], field: str, names: tuple[str, ...], optional: bool) -> int | None:
    """The index of the first header name accepted for ``field``; None if it is optional and absent."""
    for name in names:
        if name in header:
            return header.index(name)
    if optional:
        return None
    raise DatasetError(f"no {' or '.join(names)} column", path=str(path), line=1, field=field)


def _row_error(path: Path, line: int, field: str, value: str) -> DatasetError:
    """The error for a row whose ``field`` cannot be read."""
    return DatasetError(f"cannot read {field} of row", path=str(path), line=line, field=field, value=value)


def _parse_ts_ms(text: str) -> int:
    """Epoch milliseconds from epoch seconds, epoch milliseconds or ISO-8601 text (naive is UTC).

    Not ``streams.events.parse_ts``: importing ``streams`` loads the online learner (seconds).

    >>> _parse_ts_ms("1767225600"), _parse_ts_ms("1767225600000"), _parse_ts_ms("2026-01-01T00:00:00")
    (1767225600000, 1767225600000, 1767225600000)
    """
    try:
        number = float(text)
    except ValueError:
        parsed = datetime.fromisoformat(text)
        return round((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp() * 1000)
    if not math.isfinite(number) or number < 0:
        raise ValueError("timestamp must be a finite, non-negative epoch")
    return round(number) if number > _MS_CUTOFF else round(number * 1000)
