"""What an id (user, product, event, request) may look like, shared by decoder and API.

Quotes and backslashes are refused: Milvus filter expressions cannot carry
them safely (Milvus Lite fails on a primary key containing ``'``), and no
real catalog or user id needs them.

>>> is_valid_id("p00017"), is_valid_id("it's"), is_valid_id("")
(True, False, False)
"""

from __future__ import annotations

import re

ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f'\"\\]{1,128}$"
_ID = re.compile(ID_PATTERN)


def is_valid_id(value: str) -> bool:
    """True if ``value`` is 1-128 characters without control characters, quotes or backslashes."""
    return _ID.fullmatch(value) is not None
