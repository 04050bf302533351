"""What one reader is still owed, when it reads slower than events arrive.

The contract lets a slow reader skip intermediate `position`s (and older
`eta`s) and nothing else. So an item pushed with a key may replace the
pending item with the same key (latest wins), and an item without a key is
always kept. "Slow" is measured, not guessed from a burst: replacing starts
once the oldest pending item has waited `min_age_ms` (a reader that keeps up
takes items within milliseconds, even in the burst of a replay) or once
`max_len` items are pending. Memory is then bounded by `max_len`, plus the kept items,
plus one per key; a reader owed more than `max_kept` items it cannot skip is
hopeless.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from typing import Generic, NamedTuple, TypeVar

from tracking.core.errors import SlowConsumer

T = TypeVar("T")


class _Entry(NamedTuple, Generic[T]):
    key: str | None
    item: T
    queued_ms: int


class Outbox(Generic[T]):
    """A FIFO of pending items with latest-wins replacement by key for slow readers."""

    def __init__(self, max_kept: int, max_len: int = 1024, min_age_ms: int = 250) -> None:
        self.max_kept = max_kept
        self.max_len = max_len
        self.min_age_ms = min_age_ms
        self._items: OrderedDict[int, _Entry[T]] = OrderedDict()
        self._newest: dict[str, int] = {}
        self._ids = itertools.count()
        self._kept = 0
        self.skipped = 0
        """Items replaced by a newer one with the same key before they were taken."""

    def push(self, item: T, key: str | None = None, now_ms: int = 0) -> None:
        """Queue `item`; with a key, it may replace the pending item of that key.

        Raises:
            SlowConsumer: more than `max_kept` unskippable items are pending.
        """
        if key is None:
            if self._kept >= self.max_kept:
                raise SlowConsumer(f"more than {self.max_kept} events behind")
            self._kept += 1
        else:
            old = self._newest.get(key)
            if old is not None and (
                len(self._items) >= self.max_len
                or now_ms - next(iter(self._items.values())).queued_ms >= self.min_age_ms
            ):
                del self._items[old]
                self.skipped += 1
        item_id = next(self._ids)
        # Appended, not put in the old one's place: it is newer than
        # everything queued so far, and delivery stays in seq order.
        self._items[item_id] = _Entry(key, item, now_ms)
        if key is not None:
            self._newest[key] = item_id

    def pop(self) -> T | None:
        """The oldest pending item, or None."""
        if not self._items:
            return None
        item_id, entry = self._items.popitem(last=False)
        if entry.key is None:
            self._kept -= 1
        elif self._newest.get(entry.key) == item_id:
            del self._newest[entry.key]
        return entry.item

    @property
    def kept(self) -> int:
        """Pending items that cannot be skipped."""
        return self._kept

    def __len__(self) -> int:
        return len(self._items)
