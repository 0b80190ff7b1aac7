"""The garbage collector's settings for a long-running server process.

CPython frees almost everything by reference counting; its cyclic collector runs after
every 700 net allocations in the youngest generation and, every hundredth time, scans the
whole heap: every module, class, cached plan and pooled object, none of which will ever
be garbage. A call allocates a few thousand objects, so under load the collector ran
several times per call and a full scan every few hundred calls, as a pause in the
middle of some call (`make profile` charged 3-4 % of the server's samples to it).

Once the server is up (:func:`settle`), what exists then is moved out of the
collector's sight (:func:`gc.freeze`) and the youngest generation is collected after
:data:`YOUNG_THRESHOLD` allocations: per call the collector's work shrinks, and full
scans see only what the calls left behind.
"""

from __future__ import annotations

import gc
from typing import Final

#: Net allocations between collections of the youngest generation (CPython: 700).
YOUNG_THRESHOLD: Final = 20_000


def settle() -> None:
    """Collect once, freeze what survives, then collect the young generation less often.
    For the serving process only (tests and tools keep CPython's defaults)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
