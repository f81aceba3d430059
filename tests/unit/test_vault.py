"""The vault: round trip, tamper, swap, unknown key, key file permissions, environment key, rotation."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from snapbridge.errors import VaultError
from snapbridge.security import Secret, Vault, generate_key

CANARY = "canary-3e8f2a90-do-not-leak"
CONN_A = "conn_a/access_token"
CONN_B = "conn_b/access_token"


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return tmp_path / "home" / "secret.key"


@pytest.fixture
def vault(key_file: Path) -> Vault:
    return Vault.open(key_file)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _flip(token: str, index: int) -> str:
    version, key_id, data = token.split(".")
    blob = bytearray(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
    blob[index] ^= 0x01
    return f"{version}.{key_id}.{base64.urlsafe_b64encode(bytes(blob)).decode().rstrip('=')}"


def test_round_trip(vault: Vault) -> None:
    token = vault.encrypt(Secret(CANARY), bound_to=CONN_A)
    assert token.startswith(f"v1.{vault.active_key_id}.")
    assert CANARY not in token
    assert vault.decrypt(token, bound_to=CONN_A) == Secret(CANARY)


def test_the_same_secret_encrypts_differently_each_time(vault: Vault) -> None:
    assert vault.encrypt(Secret(CANARY), bound_to=CONN_A) != vault.encrypt(Secret(CANARY), bound_to=CONN_A)


@pytest.mark.parametrize("index", [0, 11, 12, 20, -1],
                         ids=["nonce-first", "nonce-last", "ct-first", "ct", "tag"])
def test_one_flipped_byte_fails(vault: Vault, index: int) -> None:
    token = vault.encrypt(Secret(CANARY), bound_to=CONN_A)
    with pytest.raises(VaultError, match="fails authentication"):
        vault.decrypt(_flip(token, index), bound_to=CONN_A)


@pytest.mark.parametrize("other", [CONN_B, "conn_a/webhook_secret", "conn_a/access_token ", "conn_a"])
def test_a_ciphertext_moved_to_another_connection_or_field_fails(vault: Vault, other: str) -> None:
    token = vault.encrypt(Secret(CANARY), bound_to=CONN_A)
    with pytest.raises(VaultError, match="another connection or field") as caught:
        vault.decrypt(token, bound_to=other)
    assert CANARY not in str(caught.value)


@pytest.mark.parametrize(
    "token",
    ["", "garbage", "v2.abc.AAAA", "v1..AAAA", "v1.abc.AAAA.extra", "v1.abc.!!!!", "v1.abc.AAAA"],
)
def test_malformed_tokens_are_vault_errors(vault: Vault, token: str) -> None:
    with pytest.raises(VaultError):
        vault.decrypt(token.replace("abc", vault.active_key_id) if token.endswith("AAAA") else token,
                      bound_to=CONN_A)


def test_an_unknown_key_id_says_which_key_and_why(vault: Vault) -> None:
    token = vault.encrypt(Secret(CANARY), bound_to=CONN_A)
    relabelled = token.replace(vault.active_key_id, "0123456789ab")
    with pytest.raises(VaultError, match=r"encrypted with key 0123456789ab, which is not in the keyring"):
        vault.decrypt(relabelled, bound_to=CONN_A)


def test_relabelling_with_another_known_key_id_fails(vault: Vault) -> None:
    old = vault.active_key_id
    token = vault.encrypt(Secret(CANARY), bound_to=CONN_A)
    new = vault.rotate()
    with pytest.raises(VaultError, match="fails authentication"):
        vault.decrypt(token.replace(old, new), bound_to=CONN_A)


def test_the_key_file_is_created_0600_with_its_directory(key_file: Path, vault: Vault) -> None:
    assert key_file.exists()
    assert _mode(key_file) == 0o600
    document = json.loads(key_file.read_text())
    assert document["active"] == vault.active_key_id
    assert list(document["keys"]) == [vault.active_key_id]


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("open_umask")
def test_the_key_file_is_0600_even_with_an_open_umask(key_file: Path) -> None:
    Vault.open(key_file)
    assert _mode(key_file) == 0o600


def test_a_second_open_reads_the_same_key(key_file: Path, vault: Vault) -> None:
    token = vault.encrypt(Secret(CANARY), bound_to=CONN_A)
    again = Vault.open(key_file)
    assert again.active_key_id == vault.active_key_id
    assert again.decrypt(token, bound_to=CONN_A) == Secret(CANARY)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o700 | 0o020])
def test_a_key_file_others_can_read_is_refused(key_file: Path, vault: Vault, mode: int) -> None:
    os.chmod(key_file, mode)
    with pytest.raises(VaultError, match=rf"mode {mode:04o}.*chmod 600 {key_file}"):
        Vault.open(key_file)


@pytest.mark.parametrize(
    ("content", "message"),
    [("not json", "cannot be read"), ('{"keys": []}', "not a snapbridge key file"),
     ('{"active": "x", "keys": {}}', "active key 'x' is not among its keys"),
     ('{"active": "x", "keys": {"x": "AAAA"}}', "must be base64 of 32 bytes")],
)
def test_a_broken_key_file_is_a_clear_error(key_file: Path, content: str, message: str) -> None:
    key_file.parent.mkdir(parents=True)
    key_file.write_text(content)
    os.chmod(key_file, 0o600)
    with pytest.raises(VaultError, match=message):
        Vault.open(key_file)


def test_an_environment_key_wins_and_writes_no_file(key_file: Path) -> None:
    env_key = generate_key()
    vault = Vault.open(key_file, env_key=env_key)
    assert not key_file.exists()
    token = vault.encrypt(Secret(CANARY), bound_to=CONN_A)
    assert Vault.open(key_file, env_key=env_key).decrypt(token, bound_to=CONN_A) == Secret(CANARY)
    with pytest.raises(VaultError, match="not in the keyring"):
        Vault.open(key_file).decrypt(token, bound_to=CONN_A)


def test_an_environment_key_keeps_the_file_keys_for_old_tokens(key_file: Path, vault: Vault) -> None:
    old_token = vault.encrypt(Secret(CANARY), bound_to=CONN_A)
    switched = Vault.open(key_file, env_key=generate_key())
    assert switched.active_key_id != vault.active_key_id
    assert switched.decrypt(old_token, bound_to=CONN_A) == Secret(CANARY)
    moved = switched.reencrypt(old_token, bound_to=CONN_A)
    assert Vault.key_id_of(moved) == switched.active_key_id


def test_the_environment_may_list_an_old_key_after_the_active_one(key_file: Path) -> None:
    old, new = generate_key(), generate_key()
    token = Vault.open(key_file, env_key=old).encrypt(Secret(CANARY), bound_to=CONN_A)
    both = Vault.open(key_file, env_key=f"{new},{old}")
    assert both.decrypt(token, bound_to=CONN_A) == Secret(CANARY)
    assert Vault.key_id_of(both.reencrypt(token, bound_to=CONN_A)) == both.active_key_id


@pytest.mark.parametrize("bad", ["short", base64.b64encode(b"x" * 31).decode(), "!!!!" * 11])
def test_a_bad_environment_key_is_refused_without_echoing_it(key_file: Path, bad: str) -> None:
    with pytest.raises(VaultError, match="SNAPBRIDGE_SECRET_KEY") as caught:
        Vault.open(key_file, env_key=bad)
    assert bad not in str(caught.value)


def test_an_environment_key_cannot_be_rotated_by_the_vault(key_file: Path) -> None:
    vault = Vault.open(key_file, env_key=generate_key())
    with pytest.raises(VaultError, match="put a new key first in SNAPBRIDGE_SECRET_KEY"):
        vault.rotate()


def test_rotate_reencrypt_retire(key_file: Path, vault: Vault) -> None:
    old = vault.active_key_id
    old_token = vault.encrypt(Secret(CANARY), bound_to=CONN_A)
    new = vault.rotate()
    assert new != old
    assert vault.active_key_id == new
    assert vault.key_ids == tuple(sorted({old, new}))
    assert vault.decrypt(old_token, bound_to=CONN_A) == Secret(CANARY)  # old keys still decrypt
    new_token = vault.reencrypt(old_token, bound_to=CONN_A)
    assert Vault.key_id_of(new_token) == new
    assert _mode(key_file) == 0o600
    assert Vault.open(key_file).active_key_id == new  # the rotation is on disk

    vault.retire(old)
    with pytest.raises(VaultError, match=f"encrypted with key {old}"):
        vault.decrypt(old_token, bound_to=CONN_A)
    assert vault.decrypt(new_token, bound_to=CONN_A) == Secret(CANARY)

    reopened = Vault.open(key_file)
    assert reopened.key_ids == (new,)
    assert reopened.decrypt(new_token, bound_to=CONN_A) == Secret(CANARY)
    with pytest.raises(VaultError, match="not in the keyring"):
        reopened.decrypt(old_token, bound_to=CONN_A)
    assert _mode(key_file) == 0o600
    assert [p.name for p in key_file.parent.iterdir()] == [key_file.name]  # no temp files left behind


def test_the_active_or_an_unknown_key_cannot_be_retired(vault: Vault) -> None:
    with pytest.raises(VaultError, match="is the active key"):
        vault.retire(vault.active_key_id)
    with pytest.raises(VaultError, match="no key nope"):
        vault.retire("nope")


def test_bound_to_is_required(vault: Vault) -> None:
    with pytest.raises(VaultError, match="bound_to is empty"):
        vault.encrypt(Secret(CANARY), bound_to="")


def test_unicode_secrets_round_trip(vault: Vault) -> None:
    secret = Secret("clé-🔑-" + CANARY)
    assert vault.decrypt(vault.encrypt(secret, bound_to=CONN_A), bound_to=CONN_A) == secret
