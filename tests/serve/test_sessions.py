"""Live sessions: when a cue is spoken and when it is suppressed; sessions expire and are bounded."""

from __future__ import annotations

import pytest

from roadscene.serve.sessions import SessionStore, WalkerSession
from roadscene.targets import navigation_cue, unclear_view_cue

CLEAR = navigation_cue("left", "right", "right_of")  # keep_left, low
PERSON_AHEAD = navigation_cue("center", "left", "left_of", {"person": ["center"]})  # high
CROSSING = navigation_cue("center", "front", "crossing_front")  # stop_crossing, high
ROAD_AHEAD_KEEP = navigation_cue("left", "center", "unknown")  # keep_left from R3: medium


def _say(session: WalkerSession, cue, now: float, reminder_s: float = 10.0):
    frame = session.next_frame(now)
    return session.decide(cue, frame, now, reminder_s)


def test_fixtures_are_what_their_names_say() -> None:
    assert (CLEAR.action, CLEAR.urgency) == ("keep_left", "low")
    assert PERSON_AHEAD.urgency == "high" and CROSSING.action == "stop_crossing"
    assert (ROAD_AHEAD_KEEP.action, ROAD_AHEAD_KEEP.urgency) == ("keep_left", "medium")


def test_spoken_on_change_urgency_rise_and_reminder_only() -> None:
    session = WalkerSession("s", last_seen=0.0)
    steps = [
        (0.0, CLEAR, True, "first"),
        (1.0, CLEAR, False, "unchanged"),
        (2.0, CLEAR, False, "unchanged"),
        (3.0, PERSON_AHEAD, True, "action changed"),
        (4.0, PERSON_AHEAD, False, "unchanged"),
        (5.0, CLEAR, True, "action changed"),  # the person has gone: say the way is clear
        (6.0, ROAD_AHEAD_KEEP, True, "urgency rose"),  # same action, now medium
        (7.0, CLEAR, False, "unchanged"),  # same action, urgency fell: nothing new to say
        (16.5, CLEAR, True, "reminder"),  # 10 s after the last spoken cue
        (17.0, CLEAR, False, "unchanged"),
        (18.0, unclear_view_cue(), True, "action changed"),
        (19.0, unclear_view_cue(), False, "unchanged"),
        (20.0, CROSSING, True, "action changed"),
    ]
    for now, cue, say, reason in steps:
        decision = _say(session, cue, now)
        assert (decision.say, decision.reason) == (say, reason), (now, cue)


def test_no_reminders_when_turned_off() -> None:
    session = WalkerSession("s", last_seen=0.0)
    assert _say(session, CLEAR, 0.0, reminder_s=0).say
    assert not _say(session, CLEAR, 1000.0, reminder_s=0).say


def test_an_older_frame_never_overrules_a_newer_one() -> None:
    session = WalkerSession("s", last_seen=0.0)
    older = session.next_frame(0.0)
    newer = session.next_frame(0.1)
    assert session.decide(PERSON_AHEAD, newer, 0.5, 10).say
    late = session.decide(CLEAR, older, 0.6, 10)  # the older frame's answer came back last
    assert (late.say, late.reason) == (False, "superseded")
    assert session.spoken_action == PERSON_AHEAD.action


def test_store_expires_and_bounds_sessions() -> None:
    now = [0.0]
    store = SessionStore(ttl_s=60, max_sessions=2, clock=lambda: now[0])
    first = store.create()
    assert len(first.id) >= 20 and store.get(first.id) is first
    now[0] = 30.0
    second = store.create()
    now[0] = 70.0  # first idle since 0 -> expired; second idle since 30 -> alive
    assert store.get(first.id) is None
    assert store.get(second.id) is second
    third = store.create()
    fourth = store.create()  # full: the least recently used (second) ends
    assert store.get(second.id) is None and len(store) == 2
    assert store.get(third.id) is third and store.get(fourth.id) is fourth
    assert store.end(third.id) and not store.end(third.id)
    assert store.get("no-such-session") is None


@pytest.mark.parametrize("count", [1, 50])
def test_session_ids_are_unique(count) -> None:
    store = SessionStore(ttl_s=60, max_sessions=100)
    ids = {store.create().id for _ in range(count)}
    assert len(ids) == count
