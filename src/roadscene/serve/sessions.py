"""Live sessions: one per walker, deciding when a cue is worth saying.

A cue is spoken as `roadscene.targets.announce.CueAnnouncer` decides (the session's first, a
changed action, a higher urgency, something newly approaching, or a reminder once `reminder_s`
have passed since the last spoken cue; otherwise suppressed, "unchanged"). An answer to a frame
older than one already decided on is never spoken ("superseded"), so a slow answer cannot
overrule a newer one.

Sessions are kept in memory, end after `ttl_s` without a frame, and at most `max_sessions` live
at once (the least recently used one ends first).
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from roadscene.targets import NavigationCue
from roadscene.targets.announce import CueAnnouncer, SpeakDecision, SpeakReason

__all__ = ["SessionStore", "SpeakDecision", "SpeakReason", "WalkerSession"]


@dataclass
class WalkerSession:
    """What one walker has been told."""

    id: str
    last_seen: float
    frames: int = 0
    decided_frame: int = -1
    announcer: CueAnnouncer = field(default_factory=CueAnnouncer)

    @property
    def spoken_action(self) -> str | None:
        return self.announcer.spoken_action

    def next_frame(self, now: float) -> int:
        """Number the next frame (at arrival, before the model answers)."""
        self.last_seen = now
        self.frames += 1
        return self.frames - 1

    def decide(
        self, cue: NavigationCue, frame: int, now: float, reminder_s: float
    ) -> SpeakDecision:
        """Whether `cue`, the answer to frame number `frame`, is to be spoken."""
        if frame < self.decided_frame:
            return SpeakDecision(False, "superseded")
        self.decided_frame = frame
        return self.announcer.decide(cue, now, reminder_s)


class SessionStore:
    """The live sessions, by id (random, unguessable)."""

    def __init__(
        self, *, ttl_s: float, max_sessions: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self.clock = clock
        self._sessions: OrderedDict[str, WalkerSession] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def _expire(self, now: float) -> None:
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if now - oldest.last_seen < self.ttl_s:
                break
            self._sessions.popitem(last=False)

    def create(self) -> WalkerSession:
        now = self.clock()
        self._expire(now)
        while len(self._sessions) >= self.max_sessions:
            self._sessions.popitem(last=False)
        session = WalkerSession(secrets.token_urlsafe(16), last_seen=now)
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str) -> WalkerSession | None:
        """The live session (marked as just used), or None when unknown or expired."""
        now = self.clock()
        self._expire(now)
        session = self._sessions.get(session_id)
        if session is not None:
            session.last_seen = now
            self._sessions.move_to_end(session_id)
        return session

    def end(self, session_id: str) -> bool:
        return self._sessions.pop(session_id, None) is not None
