"""When a cue is worth saying: repeated cues are not re-spoken.

A cue is said when it is the first, when its action differs from the last spoken cue's, when its
urgency is higher, when something close now approaches that did not in the last spoken cue (an
answer about a clip), or as a reminder once `reminder_s` have passed since the last spoken cue;
otherwise it is suppressed ("unchanged"). The live server's sessions (`roadscene.serve`) and
`describe` of a clip (one cue per window of frames) decide the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from roadscene.targets.cue import URGENCY_LEVELS, NavigationCue

SpeakReason = Literal[
    "first",
    "action changed",
    "urgency rose",
    "approaching",
    "reminder",
    "unchanged",
    "superseded",
    "no session",
]


@dataclass(frozen=True)
class SpeakDecision:
    """Whether to say the cue now, and why."""

    say: bool
    reason: SpeakReason


@dataclass
class CueAnnouncer:
    """What has been said so far, and whether the next cue is worth saying."""

    spoken_action: str | None = None
    spoken_urgency: str | None = None
    spoken_approaching: bool = False
    spoken_at: float | None = None

    def decide(self, cue: NavigationCue, now: float, reminder_s: float = 0.0) -> SpeakDecision:
        """Whether `cue` is to be said at time `now` (seconds; reminders off when
        `reminder_s` is 0); a cue said is remembered."""
        reason: SpeakReason
        if self.spoken_action is None or self.spoken_urgency is None:
            reason = "first"
        elif cue.action != self.spoken_action:
            reason = "action changed"
        elif URGENCY_LEVELS.index(cue.urgency) > URGENCY_LEVELS.index(self.spoken_urgency):
            reason = "urgency rose"
        elif cue.approaching and not self.spoken_approaching:
            reason = "approaching"
        elif reminder_s > 0 and self.spoken_at is not None and now - self.spoken_at >= reminder_s:
            reason = "reminder"
        else:
            return SpeakDecision(False, "unchanged")
        self.spoken_action, self.spoken_urgency = cue.action, cue.urgency
        self.spoken_approaching, self.spoken_at = cue.approaching, now
        return SpeakDecision(True, reason)
