"""A thread-safe journal of every request a sandbox received, so tests can count what arrived."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

__all__ = ["Journal", "JournalEntry"]


@dataclass(frozen=True)
class JournalEntry:
    seq: int
    method: str
    path: str
    status: int
    arrived_at: datetime
    idempotency_key: str | None = None
    replayed: bool = False
    entity: str | None = None  # the id of the object this request wrote, if it wrote one
    api_key: str | None = None  # a short fingerprint of the credential, never the credential itself

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["arrived_at"] = self.arrived_at.isoformat()
        return data


class Journal:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[JournalEntry] = []

    def record(self, **fields: Any) -> JournalEntry:
        with self._lock:
            entry = JournalEntry(seq=len(self._entries) + 1, **fields)
            self._entries.append(entry)
            return entry

    def entries(
        self, *, method: str | None = None, path: str | None = None, entity: str | None = None
    ) -> list[JournalEntry]:
        with self._lock:
            found = list(self._entries)
        return [
            e
            for e in found
            if (method is None or e.method == method)
            and (path is None or e.path == path)
            and (entity is None or e.entity == entity)
        ]

    def writes_to(self, entity: str) -> int:
        """How many requests actually changed this entity (replays excluded)."""
        return sum(
            1 for e in self.entries(entity=entity) if e.method != "GET" and not e.replayed and e.status < 400
        )

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
