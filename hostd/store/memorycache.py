"""A bounded in-process cache of byte strings, shared by the threads of one worker.

Used wherever an answer is expensive to compute and cheap to keep: the git
pool's small upload-pack answers and ref advertisements, the web pool's
rendered repository pages. It lives with the stores so that every pool app
can use it without importing another pool app.
"""

from __future__ import annotations

import threading
from collections import OrderedDict


class MemoryCache:
    """A thread-safe LRU of byte strings, bounded by their total size.

    ``budget`` is the most bytes kept in all; a value longer than
    ``largest`` is never kept, so one huge answer cannot flush the rest.
    """

    def __init__(self, budget: int, largest: int) -> None:
        self.budget = budget
        self.largest = largest
        self._entries: OrderedDict[object, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: object) -> bytes | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: object, value: bytes) -> None:
        if len(value) > self.largest:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._size -= len(old)
            self._entries[key] = value
            self._size += len(value)
            while self._size > self.budget:
                _, evicted = self._entries.popitem(last=False)
                self._size -= len(evicted)
