"""The bookkeeping both readers share, without I/O: the in-process cache, the announcements seen,
and who waits for which generation. Thread-safe; never held across an ``await``."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

from .contract import Announcement, CurrentToken


@dataclass(eq=False)
class Waiter:
    """Someone waiting for a generation above ``newer_than``; ``wake`` is called on an announcement of one."""

    client_id: str
    newer_than: int
    wake: Callable[[], None]


class TokenCache:
    def __init__(self, enabled: bool, now: Callable[[], int], is_live: Callable[[], bool]) -> None:
        self.enabled = enabled
        self._now = now
        # Only while the subscription is confirmed and its connection has not failed can the
        # absence of an announcement be trusted.
        self._is_live = is_live
        self._lock = threading.Lock()
        self._tokens: dict[str, CurrentToken] = {}
        # Per client, a count of announcements: a read that started before one must not fill the
        # cache (the announcement may name a newer token than the read saw).
        self._announcements: dict[str, int] = {}
        self._waiters: dict[str, set[Waiter]] = {}

    def fresh(self, client_id: str) -> CurrentToken | None:
        """The cached token while it is unexpired; an expired one is dropped."""
        with self._lock:
            token = self._tokens.get(client_id)
            if token is not None and token.expires_at <= self._now():
                del self._tokens[client_id]
                return None
            return token

    def read_started(self, client_id: str) -> int:
        with self._lock:
            return self._announcements.get(client_id, 0)

    def read_finished(self, token: CurrentToken, announcements_before: int) -> None:
        """Caches what a read returned unless an announcement came meanwhile, the cache is off or
        cannot be trusted, or it holds a newer token."""
        with self._lock:
            if not self.enabled or not self._is_live() or self._announcements.get(token.client_id, 0) != announcements_before:
                return
            cached = self._tokens.get(token.client_id)
            if cached is None or cached.generation < token.generation:
                self._tokens[token.client_id] = token

    def on_announcement(self, announcement: Announcement) -> None:
        with self._lock:
            client_id = announcement.client_id
            self._announcements[client_id] = self._announcements.get(client_id, 0) + 1
            cached = self._tokens.get(client_id)
            if cached is not None and cached.generation < announcement.generation:
                del self._tokens[client_id]
            waiters = [waiter for waiter in self._waiters.get(client_id, ()) if announcement.generation > waiter.newer_than]
        for waiter in waiters:
            waiter.wake()

    def add_waiter(self, waiter: Waiter) -> None:
        with self._lock:
            self._waiters.setdefault(waiter.client_id, set()).add(waiter)

    def remove_waiter(self, waiter: Waiter) -> None:
        with self._lock:
            waiters = self._waiters.get(waiter.client_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[waiter.client_id]

    def wake_all(self) -> None:
        with self._lock:
            waiters = [waiter for waiters in self._waiters.values() for waiter in waiters]
        for waiter in waiters:
            waiter.wake()

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()
