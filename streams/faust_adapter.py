"""Every use of faust's private attributes by the stream worker, checked when the worker starts.

faust-streaming is pinned to the exact version these were read in
(``pyproject.toml``). A release that renames one must stop the worker with a
clear error naming it, never fall back silently: each of them guards
against losing or re-applying events (see ``streams.batching``). The table
store's own uses (``streams.table_store``, which subclasses faust's RocksDB
store) are checked here too, by :func:`check`.

- ``Consumer._gap``: per partition, the offsets faust skipped, counted as
  acknowledged at the next commit. Offsets streamrec reads again must leave
  it (or they are committed before they are applied); offsets with no
  record behind them must be in it (or they hold commits back forever).
- ``Consumer._committed_offset``: where the group resumed a partition.
- ``App._stop_fetcher``: stops fetching without stopping the app, so a
  stopping worker can finish what it holds.
- ``Consumer._wait_next_records``: the one fetch faust makes for all its
  streams; ``streams.intake`` takes the bulk topics' records out of it.
- ``Consumer._acked``, ``_acked_index``, ``_n_acked``: the acknowledged
  offsets faust commits from; the intake acknowledges a batch's offsets
  there, as faust's own per-message ``ack`` does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable, MutableMapping
from typing import Any, cast

from faust.types import TP, AppT
from faust.types.tuples import ack_lock
from intervaltree import IntervalTree

from streamrec.errors import StreamrecError
from streams import table_store

# Attributes of a started app's consumer and of the app (instance attributes: checked on the objects).
CONSUMER_ATTRIBUTES = ("_gap", "_committed_offset", "_wait_next_records", "_acked", "_acked_index", "_n_acked")
APP_ATTRIBUTES = ("_stop_fetcher",)


def check(app: AppT) -> None:
    """Raise :class:`StreamrecError` naming every private attribute the installed faust lacks.

    Call once the app's consumer exists (the worker does it as it starts).
    """
    missing = [f"Consumer.{name}" for name in CONSUMER_ATTRIBUTES if not hasattr(app.consumer, name)]
    missing += [f"App.{name}" for name in APP_ATTRIBUTES if not hasattr(app, name)]
    if missing:
        raise StreamrecError(
            "the installed faust-streaming lacks attributes streamrec relies on; install the pinned version",
            missing=missing,
        )
    table_store.check_faust()


def _gaps(app: AppT) -> MutableMapping[TP, IntervalTree]:
    return cast(MutableMapping[TP, IntervalTree], app.consumer._gap)  # type: ignore[attr-defined]


def settle_gap(app: AppT, tp: TP, start: int, last: int, empty: Collection[int] = ()) -> None:
    """Offsets ``start..last`` of ``tp`` are now streamrec's to acknowledge, except those in ``empty``.

    faust filed them (and the record that revealed the jump) as a gap; left
    there, each would count as done at the next commit, before its record is
    applied. Offsets without a record behind them (compaction, transaction
    markers) are filed again, so they never hold commits back.
    """
    tree = _gaps(app)[tp]  # a defaultdict: a partition without a gap gets an empty tree
    tree.chop(start, last + 1)
    for offset in sorted(empty):
        tree.addi(offset, offset + 1)
    if empty:
        tree.merge_overlaps()


def gap_offsets(app: AppT, tp: TP) -> list[int]:
    """The offsets of ``tp`` faust counts as done without a record acknowledged (for tests and logs)."""
    tree = _gaps(app).get(tp)
    return sorted(offset for interval in tree or () for offset in range(interval.begin, interval.end))


def committed_offset(app: AppT, tp: TP) -> int | None:
    """The offset faust resumed ``tp`` from after its last assignment, once it seeked there (else None)."""
    known: Any = app.consumer._committed_offset.get(tp)  # type: ignore[attr-defined]
    return int(known) if known is not None else None


async def stop_fetcher(app: AppT) -> None:
    """Stop fetching records; the app and its agents keep running."""
    await app._stop_fetcher()  # type: ignore[attr-defined]


def offsets_without(records: Iterable[int], start: int, end: int) -> list[int]:
    """The offsets in ``start <= offset < end`` that are not in ``records``.

    >>> offsets_without([3, 5], 2, 7)
    [2, 4, 6]
    """
    present = set(records)
    return [offset for offset in range(start, end) if offset not in present]


Fetch = Callable[[], Awaitable[tuple[Any, Any]]]


def intercept_fetches(app: AppT, hook: Callable[[Fetch], Awaitable[tuple[Any, Any]]]) -> None:
    """Route every fetch of the app's consumer through ``hook``.

    ``hook`` gets the fetch to run and returns its ``(records, active
    partitions)``; records it removes from the map never reach faust's
    streams.
    """
    consumer: Any = app.consumer
    fetch = consumer._wait_next_records

    async def wait_next_records(timeout: float) -> tuple[Any, Any]:
        return await hook(lambda: fetch(timeout))

    consumer._wait_next_records = wait_next_records


def acknowledge(app: AppT, tp: TP, offsets: Iterable[int]) -> int:
    """Count ``offsets`` of ``tp`` as handled, for faust's next commit (as its per-message ``ack`` does); how many."""
    consumer: Any = app.consumer
    committed = consumer._committed_offset.get(tp)
    with ack_lock:
        index = consumer._acked_index[tp]
        fresh = [o for o in offsets if (committed is None or o >= committed) and o not in index]
        index.update(fresh)
        consumer._acked[tp].extend(fresh)
        consumer._n_acked += len(fresh)
    return len(fresh)


def file_empty(app: AppT, tp: TP, start: int, end: int) -> None:
    """Offsets ``start <= offset < end`` of ``tp`` hold no record: count them as done at the next commit."""
    committed = committed_offset(app, tp)
    if committed is not None:
        start = max(start, committed)
    if start < end:
        tree = _gaps(app)[tp]
        tree.addi(start, end)
        tree.merge_overlaps()


def assigned(app: AppT) -> set[TP]:
    """The partitions assigned to the app's consumer now."""
    return set(app.consumer.assignment())


def flow_active(app: AppT) -> bool:
    """Whether the consumer's flow is on (faust stops it for a rebalance and while tables recover)."""
    return bool(cast(Any, app.consumer).flow_active)
