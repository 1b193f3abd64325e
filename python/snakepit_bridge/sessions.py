"""Per-session state with an idle time-to-live."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from snakepit_bridge.callbacks import CallbackChannel
from snakepit_bridge.errors import AlreadyExists, InvalidArgument, SessionNotFound
from snakepit_bridge.variables import VariableStore

DEFAULT_TTL_SECONDS = 3600


@dataclass
class Session:
    session_id: str
    ttl_seconds: int
    metadata: dict[str, str]
    created_at: float = field(default_factory=time.time)
    last_used_at: float = field(default_factory=time.time)
    variables: VariableStore = field(default_factory=VariableStore)
    callbacks: CallbackChannel | None = None
    objects: dict[str, Any] = field(default_factory=dict)
    instance_lms: dict[str, Any] = field(default_factory=dict)
    next_object: int = 0

    def keep(self, obj: Any) -> str:
        """Stores an object in the session and returns its id."""
        self.next_object += 1
        object_id = f"obj-{self.next_object}"
        self.objects[object_id] = obj
        return object_id

    def touch(self) -> None:
        self.last_used_at = time.time()

    def expired(self, now: float) -> bool:
        return now - self.last_used_at > self.ttl_seconds

    def close(self) -> None:
        self.variables.close()
        if self.callbacks is not None:
            self.callbacks.close()


class SessionStore:
    """All sessions of one worker."""

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, session_id: str, ttl_seconds: int, metadata: dict[str, str]) -> Session:
        if not session_id:
            raise InvalidArgument("a session needs an id")
        if session_id in self._sessions:
            raise AlreadyExists(f"session {session_id!r} already exists on this worker")
        session = Session(session_id, ttl_seconds or DEFAULT_TTL_SECONDS, dict(metadata))
        self._sessions[session_id] = session
        return session

    def get(self, session_id: str) -> Session:
        session = self._sessions.get(session_id)
        if session is None:
            raise SessionNotFound(session_id)
        session.touch()
        return session

    def cleanup(self, session_id: str) -> Session | None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            session.close()
        return session

    def prune(self, now: float | None = None) -> list[str]:
        """Removes sessions idle for longer than their TTL; returns their ids."""
        now = time.time() if now is None else now
        expired = [sid for sid, s in self._sessions.items() if s.expired(now)]
        for sid in expired:
            self.cleanup(sid)
        return expired
