"""The bounded in-process byte cache (hostd.store.memorycache)."""

from __future__ import annotations

from hostd.store.memorycache import MemoryCache


def test_memory_cache_is_bounded_by_size() -> None:
    cache = MemoryCache(budget=10, largest=6)
    cache.put("a", b"1234")
    cache.put("b", b"1234")
    cache.put("huge", b"1234567")  # over `largest`: never kept
    assert cache.get("huge") is None
    assert cache.get("a") == b"1234"  # now most recently used
    cache.put("c", b"1234")  # over budget: evicts b, the least recently used
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (b"1234", None, b"1234")
    cache.put("a", b"12")
    assert cache.get("a") == b"12"
