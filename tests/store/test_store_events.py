"""Inbound events, cursors, profiles and workflows on both engines; a transaction commits all or nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from snapbridge.errors import InvalidInput
from snapbridge.store import (
    EventMark,
    EventSource,
    EventStatus,
    NewInboundEvent,
    NewJob,
    NewRun,
    Profile,
    Store,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _event(key: str, payload: dict[str, object] | None = None, at: datetime = T0) -> NewInboundEvent:
    return NewInboundEvent(EventSource.GUMROAD, "gumroad", key, "sale", payload or {"sale_id": key}, at)


def test_a_batch_is_stored_once_per_key(store: Store) -> None:
    first = store.insert_events([_event("b"), _event("a"), _event("b", {"retry_count": 1})])
    assert [(r.key, r.duplicate) for r in first] == [("b", False), ("a", False), ("b", True)]
    assert first[0].id == first[2].id != first[1].id
    again = store.insert_events([_event("a"), _event("c")])
    assert [(r.id, r.duplicate) for r in again] == [(first[1].id, True), (again[1].id, False)]
    pending = store.pending_events(10)
    assert [e.dedupe_key for e in pending] == ["a", "b", "c"]  # stored sorted by key within a batch
    stored = store.get_event(first[0].id)
    assert stored is not None
    assert stored.payload == {"sale_id": "b"} and stored.status is EventStatus.RECEIVED
    assert stored.received_at == T0 and stored.source is EventSource.GUMROAD


def test_in_order_batches_number_rows_in_the_order_given(store: Store) -> None:
    known = store.insert_events([_event("m")])[0]
    keys = [f"z{n:04d}" if n % 2 else f"a{n:04d}" for n in range(1500)]  # past one statement's rows
    with store.transaction() as tx:
        results = tx.insert_events([_event(k) for k in [*keys[:700], "m", *keys[700:], keys[3]]], in_order=True)
    new = [r for r in results if not r.duplicate]
    assert [r.key for r in new] == keys
    assert [r.id for r in new] == sorted(r.id for r in new)  # ids follow the order given, not the keys
    assert results[700].id == known.id and results[700].duplicate
    assert results[-1].duplicate and results[-1].id == results[3].id


def test_an_empty_batch_is_fine(store: Store) -> None:
    assert store.insert_events([]) == []


def test_a_large_batch_spans_statement_chunks(store: Store) -> None:
    events = [_event(f"k{i:04d}") for i in range(1203)]
    results = store.insert_events(events + events[:5])
    assert len({r.id for r in results}) == 1203
    assert [r.duplicate for r in results[-5:]] == [True] * 5
    assert store.counts()["events_received"] == 1203


def test_datetimes_come_back_in_utc_whatever_zone_went_in(store: Store) -> None:
    later = T0.astimezone(timezone(timedelta(hours=-5)))
    (result,) = store.insert_events([_event("tz", at=later)])
    stored = store.get_event(result.id)
    assert stored is not None and stored.received_at == T0 and stored.received_at.utcoffset() == timedelta(0)


def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(InvalidInput, match="no time zone"):
        store.insert_events([_event("naive", at=datetime(2025, 1, 1))])
    assert store.pending_events(10) == []


def test_deriving_in_one_transaction(store: Store) -> None:
    (event,) = store.insert_events([_event("sale-1")])
    with store.transaction() as tx:
        (pending,) = tx.pending_events(10)
        assert pending.id == event.id
        assert tx.get_profile("gumroad", "Ada@Example.com") is None
        tx.save_profile(Profile("gumroad", "Ada@Example.com", first_seen_at=T0, updated_at=T0, name="Ada",
                                tags=("vip",), attributes={"country": "GB"}, purchases=1))
        key = "customer:ada@example.com"
        run_id = tx.create_run(NewRun("welcome", event.id, "customer.created", key, T0))
        tx.enqueue([NewJob(run_id, 0, "s0", "customers.create", "hl", "customer:ada@example.com", "i-1", {})])
        assert tx.mark_event(event.id, EventStatus.DERIVED, now=T0)
        tx.set_cursor("gumroad.sales", "2025-03-01T12:00:00Z", now=T0)
    assert store.pending_events(10) == []
    derived = store.get_event(event.id)
    assert derived is not None and derived.status is EventStatus.DERIVED and derived.derived_at == T0
    profile = store.get_profile("gumroad", "ada@example.com")
    assert profile is not None
    assert (profile.email, profile.name, profile.tags, profile.attributes, profile.purchases) == (
        "ada@example.com", "Ada", ("vip",), {"country": "GB"}, 1)
    assert store.get_cursor("gumroad.sales") == "2025-03-01T12:00:00Z"
    assert store.counts()["queued"] == 1


def test_a_batch_of_events_derived_at_once(store: Store) -> None:
    events = store.insert_events([_event(f"sale-{i}") for i in range(3)])
    with store.transaction() as tx:
        runs = [NewRun(w, e.id, "purchase", f"customer:{e.id}", T0) for e in events for w in ("a", "b")]
        manual = NewRun("a", None, "manual", "customer:x", T0)
        ids = tx.create_runs([*runs, manual, manual, runs[0]])
        again = tx.create_runs(runs)
        marks = [EventMark(e.id, EventStatus.DERIVED) for e in events[:2]]
        marks += [EventMark(events[2].id, EventStatus.IGNORED, "no workflow"),
                  EventMark(999, EventStatus.IGNORED)]
        assert tx.mark_events(marks, now=T0) == 3
    assert len(set(ids[:6])) == 6 and ids[6] != ids[7] and ids[8] == ids[0]
    assert again == ids[:6]
    assert store.pending_events(10) == []
    ignored = store.get_event(events[2].id)
    assert ignored is not None and (ignored.status, ignored.note) == (EventStatus.IGNORED, "no workflow")


def test_a_failed_transaction_leaves_nothing(store: Store) -> None:
    (event,) = store.insert_events([_event("sale-1")])
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.mark_event(event.id, EventStatus.IGNORED, "no workflow", now=T0)
        tx.set_cursor("c", "1", now=T0)
        tx.insert_events([_event("sale-2")])
        raise RuntimeError("deriver crashed")
    assert [e.dedupe_key for e in store.pending_events(10)] == ["sale-1"]
    assert store.get_cursor("c") is None


def test_a_store_write_inside_a_transaction_is_refused_at_once(store: Store) -> None:
    with pytest.raises(RuntimeError, match="use the Tx"), store.transaction():
        store.insert_events([_event("inner")])
    assert store.insert_events([_event("after")])[0].duplicate is False


def test_marking_an_unknown_event_says_so(store: Store) -> None:
    with store.transaction() as tx:
        assert tx.mark_event(404, EventStatus.REJECTED, "verify-by-fetch: no such sale") is False


def test_cursor_moves_forward(store: Store) -> None:
    with store.transaction() as tx:
        tx.set_cursor("p", "1", now=T0)
    with store.transaction() as tx:
        assert tx.get_cursor("p") == "1"
        tx.set_cursor("p", "2", now=T0)
    assert store.get_cursor("p") == "2"


def test_saving_a_profile_again_keeps_first_seen(store: Store) -> None:
    later = T0 + timedelta(days=3)
    with store.transaction() as tx:
        first = tx.save_profile(Profile("g", "a@x.io", first_seen_at=T0, updated_at=T0, plan="basic"))
        second = tx.save_profile(Profile("g", "A@X.io", first_seen_at=later, updated_at=later, plan="pro",
                                         last_activity_at=later, lifetime_value_cents=1500,
                                         segments=("big",)))
        other = tx.save_profile(Profile("g2", "a@x.io", first_seen_at=T0, updated_at=T0))
    assert first == second != other
    profile = store.get_profile("g", "a@x.io")
    assert profile is not None
    assert (profile.plan, profile.first_seen_at, profile.updated_at, profile.last_activity_at) == (
        "pro", T0, later, later)
    assert (profile.lifetime_value_cents, profile.segments) == (1500, ("big",))


def test_saving_many_profiles_at_once_matches_saving_each(store: Store) -> None:
    later = T0 + timedelta(days=1)
    with store.transaction() as tx:
        tx.save_profile(Profile("g", "b@x.io", first_seen_at=T0, updated_at=T0, plan="basic"))
        tx.save_profiles([
            Profile("g", "B@X.io", first_seen_at=later, updated_at=later, plan="pro", tags=("vip",)),
            Profile("g", "c@x.io", first_seen_at=later, updated_at=later, attributes={"k": "v"}),
        ])
        tx.save_profiles([])
    updated, created = store.get_profile("g", "b@x.io"), store.get_profile("g", "c@x.io")
    assert updated is not None and (updated.plan, updated.tags, updated.first_seen_at) == ("pro", ("vip",), T0)
    assert created is not None and (created.attributes, created.first_seen_at) == ({"k": "v"}, later)


def test_workflows_are_saved_listed_toggled_and_deleted(store: Store) -> None:
    later = T0 + timedelta(hours=1)
    store.save_workflow("welcome", "name: welcome\n", now=T0)
    store.save_workflow("alpha", "name: alpha\n", enabled=False, now=T0)
    updated = store.save_workflow("welcome", "name: welcome\n# v2\n", now=later)
    assert (updated.created_at, updated.updated_at) == (T0, later)
    assert updated.source_yaml == "name: welcome\n# v2\n"
    assert [w.name for w in store.list_workflows()] == ["alpha", "welcome"]
    assert [w.name for w in store.list_workflows(enabled_only=True)] == ["welcome"]
    assert store.set_workflow_enabled("alpha", enabled=True, now=later)
    assert store.set_workflow_enabled("missing", enabled=True) is False
    with store.transaction() as tx:
        assert [w.name for w in tx.list_workflows(enabled_only=True)] == ["alpha", "welcome"]
    assert store.delete_workflow("alpha") and not store.delete_workflow("alpha")
    assert store.get_workflow("alpha") is None
    got = store.get_workflow("welcome")
    assert got is not None and got.enabled
