"""Listing customer profiles on both engines: id order, paging, search on email or name, segment filter."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from snapbridge.store import Profile, Store, profiles

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

PEOPLE = [
    ("ada@example.com", "Ada Lovelace", ("vip", "trial")),
    ("bob@example.com", "Bob 100%_sure", ("trial",)),
    ("carol@Example.org", None, ()),
    ("dan@example.org", "Dan", ("vip",)),
]


def _seed(store: Store) -> list[int]:
    with store.transaction() as tx:
        return [tx.save_profile(Profile("gumroad", email, T0, T0, name=name, segments=segments))
                for email, name, segments in PEOPLE]


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({}, [0, 1, 2, 3]),
    ({"search": "EXAMPLE.ORG"}, [2, 3]),
    ({"search": "lovelace"}, [0]),
    ({"search": "  dan "}, [3]),
    ({"search": "100%_"}, [1]),  # LIKE wildcards are literal
    ({"search": "%"}, [1]),
    ({"search": "nobody"}, []),
    ({"segment": "vip"}, [0, 3]),
    ({"segment": "trial", "search": "bob"}, [1]),
    ({"segment": "vi"}, []),  # a whole segment name, not a substring
    ({"segment": ""}, [0, 1, 2, 3]),
    ({"limit": 2}, [0, 1]),
    ({"limit": 0}, []),
    ({"segment": "vip", "limit": 1}, [0]),
])
def test_filters(store: Store, kwargs: dict[str, object], expected: list[int]) -> None:
    ids = _seed(store)
    found = store.list_profiles(**kwargs)  # type: ignore[arg-type]
    assert [p.id for p in found] == [ids[i] for i in expected]


def test_pages_follow_after_id_and_records_are_whole(store: Store) -> None:
    ids = _seed(store)
    first = store.list_profiles(limit=2)
    second = store.list_profiles(limit=2, after_id=first[-1].id)
    assert [p.id for p in first + second] == ids
    assert store.list_profiles(after_id=ids[-1]) == []
    assert [p.id for p in store.list_profiles(segment="vip", after_id=ids[0])] == [ids[3]]
    ada = first[0]
    assert (ada.email, ada.name, ada.segments, ada.first_seen_at) == ("ada@example.com", "Ada Lovelace",
                                                                       ("vip", "trial"), T0)
    assert second[0].email == "carol@example.org"  # stored lowercased


def test_segment_filter_reads_past_one_scan_chunk(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profiles, "SCAN_ROWS", 2)
    with store.transaction() as tx:
        ids = [tx.save_profile(Profile("gumroad", f"c{i}@example.com", T0, T0,
                                       segments=("vip",) if i % 3 == 0 else ())) for i in range(10)]
    found = store.list_profiles(segment="vip", limit=3)
    assert [p.id for p in found] == [ids[0], ids[3], ids[6]]
    assert [p.id for p in store.list_profiles(segment="vip", after_id=ids[6])] == [ids[9]]


def test_get_profiles_reads_many_keys_at_once_any_case(store: Store) -> None:
    _seed(store)
    keys = [("gumroad", "ADA@example.com"), ("gumroad", "dan@example.org"), ("gumroad", "nobody@x.example"),
            ("other", "ada@example.com")]
    found = store.get_profiles(keys)
    assert set(found) == set(keys)
    assert found[keys[0]] is not None and found[keys[0]].name == "Ada Lovelace"
    assert found[keys[1]] is not None and found[keys[1]].name == "Dan"
    assert found[keys[2]] is None and found[keys[3]] is None
    with store.transaction() as tx:  # the locking form inside a transaction agrees with get_profile
        locked = tx.get_profiles(keys)
        assert locked == {key: tx.get_profile(*key) for key in keys}
    assert store.get_profiles([]) == {}
