"""The connections table keeps ciphertexts and metadata, per name, on both engines."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from snapbridge.store import ConnectionRecord, ConnectionStore


def _record(name: str = "snapshots", account: str = "Acme") -> ConnectionRecord:
    return ConnectionRecord(
        name=name, app="snapshots", base_url="http://127.0.0.1:1", credential="v1.k.cipher",
        webhook_key="v1.k.pub", account=account, scopes=("a", "b"), options={"verify_by_fetch": True},
    )


def test_save_get_list_remove(migrated: Engine) -> None:
    store = ConnectionStore(migrated)
    store.save(_record())
    store.save(_record("gumroad"))
    got = store.get("snapshots")
    assert got is not None
    assert (got.credential, got.scopes, got.options, got.account) == ("v1.k.cipher", ("a", "b"),
                                                                        {"verify_by_fetch": True}, "Acme")
    assert got.created_at.tzinfo is not None
    assert [r.name for r in store.list()] == ["gumroad", "snapshots"]
    assert store.remove("gumroad") is True
    assert store.remove("gumroad") is False
    assert store.get("gumroad") is None


def test_saving_again_replaces(migrated: Engine) -> None:
    store = ConnectionStore(migrated)
    store.save(_record(account="Old"))
    store.save(_record(account="New"))
    assert [r.account for r in store.list()] == ["New"]


def test_repr_hides_credentials() -> None:
    assert "cipher" not in repr(_record())
