"""The products a worker looked up recently, so a batch asks the store only for those it has not seen.

A batch of clicks names hundreds of products, most of them the same popular
ones batch after batch; asking Milvus for all of them each time cost more
than folding the events. A product row read here is at most ``ttl_s`` old:
a catalog change reaches profiles that much later on other workers (the
worker that embeds the change updates its own cache at once). Only products
found are kept, so a click on a product not embedded yet is looked up again
on every retry of its parking.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence

from prometheus_client import Counter

from ranker.store import ProductRow

LOOKUPS = Counter("streamrec_product_cache_lookups_total", "Product lookups of the stream workers", ["outcome"])


class ProductCache:
    """A bounded LRU of product rows, each kept at most ``ttl_s``."""

    def __init__(self, size: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.ttl_s = ttl_s
        self._clock = clock
        self._rows: OrderedDict[str, tuple[float, ProductRow]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._rows)

    def get_many(self, product_ids: Iterable[str]) -> tuple[dict[str, ProductRow], list[str]]:
        """The cached rows among ``product_ids`` and the ids to look up (absent or older than ``ttl_s``)."""
        now = self._clock()
        found: dict[str, ProductRow] = {}
        missing: list[str] = []
        for product_id in product_ids:
            entry = self._rows.get(product_id)
            if entry is not None and now - entry[0] <= self.ttl_s:
                self._rows.move_to_end(product_id)
                found[product_id] = entry[1]
            else:
                missing.append(product_id)
        LOOKUPS.labels("hit").inc(len(found))
        LOOKUPS.labels("miss").inc(len(missing))
        return found, missing

    def put_many(self, rows: Mapping[str, ProductRow] | Sequence[ProductRow]) -> None:
        """Keep ``rows`` (the least recently used leave beyond ``size``)."""
        if self.size <= 0:
            return
        now = self._clock()
        for row in rows.values() if isinstance(rows, Mapping) else rows:
            self._rows[row.product_id] = (now, row)
            self._rows.move_to_end(row.product_id)
        while len(self._rows) > self.size:
            self._rows.popitem(last=False)

    def discard(self, product_ids: Iterable[str]) -> None:
        """Forget ``product_ids`` (deleted products)."""
        for product_id in product_ids:
            self._rows.pop(product_id, None)
