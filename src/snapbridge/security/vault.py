"""The credential vault: secrets encrypted at rest with AES-256-GCM, bound to their connection and field.

A token is text, `v1.<key_id>.<base64url(nonce + ciphertext)>`. The associated data is the format version,
the key id and the caller's `bound_to` (connection id + field name), so a ciphertext copied to another
connection or field, or relabelled with another key id, fails to decrypt.

Keys live in a key file (JSON `{"version": 1, "active": id, "keys": {id: base64}}`, mode 0600, written
atomically) or come from the environment (SNAPBRIDGE_SECRET_KEY: base64 of 32 bytes, or several separated by
commas, the first active and the rest kept to decrypt older tokens). A key id is derived from the key itself,
so the same key always has the same id wherever it is loaded from.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import secrets
import stat
import threading
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from snapbridge.errors import VaultError
from snapbridge.security.secret import Secret

__all__ = ["Vault", "generate_key"]

TOKEN_VERSION = "v1"  # noqa: S105 - a format tag, not a password
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
ENV_VAR = "SNAPBRIDGE_SECRET_KEY"


def generate_key() -> str:
    """A fresh key as base64 text, the form SNAPBRIDGE_SECRET_KEY takes."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def _key_id(key: bytes) -> str:
    # A fingerprint, not the key: 48 bits of a domain-separated hash identify a key among a handful.
    return hashlib.sha256(b"snapbridge/vault/key-id\0" + key).hexdigest()[:12]


def _decode_key(text: str, where: str) -> bytes:
    text = text.strip()
    text += "=" * (-len(text) % 4)  # accept unpadded and URL-safe forms as well as the standard one
    try:
        raw = base64.b64decode(text, altchars=b"-_" if ("-" in text or "_" in text) else None, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VaultError(f"{where}: a key is not valid base64") from exc
    if len(raw) != KEY_BYTES:
        raise VaultError(f"{where}: a key must be base64 of {KEY_BYTES} bytes, this one has {len(raw)}")
    return raw


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _aad(key_id: str, bound_to: str) -> bytes:
    return f"snapbridge/vault/{TOKEN_VERSION}\0{key_id}\0{bound_to}".encode()


def _check_permissions(path: Path) -> None:
    if os.name != "posix":
        return  # POSIX modes mean nothing elsewhere; the file's ACL is the operator's business there
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise VaultError(
            f"key file {path} is accessible to group or others (mode {mode:04o}); "
            f"restrict it with `chmod 600 {path}` and start again"
        )


def _write_new(path: Path, payload: bytes) -> None:
    """Create `path` with mode 0600 whatever the umask; fails if it already exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if os.name == "posix":
            os.fchmod(fd, 0o600)  # a umask can only remove bits, but 0o600 must survive even umask 0o777
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Vault:
    """A keyring with one active key; encrypts and decrypts secrets bound to a connection and field."""

    def __init__(self, keys: Mapping[str, bytes], active: str, *, key_file: Path | None = None,
                 env_key_ids: frozenset[str] = frozenset()) -> None:
        if active not in keys:
            raise VaultError(f"the active key {active} is not in the keyring")
        self._keys = dict(keys)
        self._active = active
        self._key_file = key_file
        self._env_key_ids = env_key_ids
        self._lock = threading.Lock()

    # ----- opening

    @classmethod
    def open(cls, key_file: Path, env_key: str | None = None) -> Vault:
        """The vault of this key file, created on first run; an environment key, when given, is active."""
        if env_key is not None and env_key.strip():
            env_keys = [_decode_key(part, ENV_VAR) for part in env_key.split(",") if part.strip()]
            env_ids = {_key_id(key): key for key in env_keys}
            keys: dict[str, bytes] = {}
            # Keys still in the file remain usable for decrypting what was written before the switch.
            if key_file.exists():
                keys.update(cls._read_key_file(key_file)[1])
            keys.update(env_ids)
            return cls(keys, _key_id(env_keys[0]), key_file=key_file if key_file.exists() else None,
                       env_key_ids=frozenset(env_ids))
        if not key_file.exists():
            cls._create_key_file(key_file)
        active, keys = cls._read_key_file(key_file)
        return cls(keys, active, key_file=key_file)

    @staticmethod
    def _create_key_file(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = secrets.token_bytes(KEY_BYTES)
        try:
            _write_new(path, _serialise(_key_id(key), {_key_id(key): key}))
        except FileExistsError:
            return  # another process created it first; its key is the one to use
        _fsync_dir(path.parent)

    @staticmethod
    def _read_key_file(path: Path) -> tuple[str, dict[str, bytes]]:
        _check_permissions(path)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise VaultError(f"key file {path} cannot be read: {type(exc).__name__}") from exc
        if not isinstance(document, dict) or not isinstance(document.get("keys"), dict):
            raise VaultError(f"key file {path} is not a snapbridge key file (no 'keys' object)")
        keys: dict[str, bytes] = {}
        for key_id, text in document["keys"].items():
            if not isinstance(text, str):
                raise VaultError(f"key file {path}: key {key_id} is not a string")
            key = _decode_key(text, f"key file {path}")
            if _key_id(key) != key_id:
                raise VaultError(f"key file {path}: key {key_id} does not match its id (edited by hand?)")
            keys[key_id] = key
        active = document.get("active")
        if not isinstance(active, str) or active not in keys:
            raise VaultError(f"key file {path}: the active key {active!r} is not among its keys")
        return active, keys

    # ----- keys

    @property
    def active_key_id(self) -> str:
        return self._active

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every key id in the keyring, sorted."""
        return tuple(sorted(self._keys))

    def derive_key(self, purpose: str) -> bytes:
        """A 32-byte key for `purpose` (HKDF of the active key): every process sharing this vault derives the
        same one, so what one process signs (a dashboard form's CSRF token) another accepts."""
        hkdf = HKDF(algorithm=SHA256(), length=KEY_BYTES, salt=None, info=b"snapbridge:" + purpose.encode("utf-8"))
        return hkdf.derive(self._keys[self._active])

    @staticmethod
    def key_id_of(token: str) -> str:
        """The id of the key a token was encrypted with (to find what still needs re-encrypting)."""
        return _split(token)[0]

    def rotate(self) -> str:
        """Add a new key and make it active; older keys still decrypt until `retire`. Returns the new id."""
        with self._lock:
            if self._active in self._env_key_ids:
                raise VaultError(
                    f"the active key comes from {ENV_VAR}; to rotate, put a new key first in {ENV_VAR} "
                    "(comma-separated, old key after it), re-encrypt, then drop the old key from the variable"
                )
            key = secrets.token_bytes(KEY_BYTES)
            key_id = _key_id(key)
            keys = {**self._keys, key_id: key}
            self._persist(key_id, keys)
            self._keys, self._active = keys, key_id
            return key_id

    def retire(self, key_id: str) -> None:
        """Remove an old key; tokens still encrypted with it can no longer be read."""
        with self._lock:
            if key_id not in self._keys:
                raise VaultError(f"no key {key_id} in the keyring; known: {sorted(self._keys)}")
            if key_id == self._active:
                raise VaultError(f"key {key_id} is the active key; rotate first, then retire it")
            if key_id in self._env_key_ids:
                raise VaultError(f"key {key_id} comes from {ENV_VAR}; remove it from the variable instead")
            keys = {kid: key for kid, key in self._keys.items() if kid != key_id}
            self._persist(self._active, keys)
            self._keys = keys

    def _persist(self, active: str, keys: Mapping[str, bytes]) -> None:
        path = self._key_file
        if path is None:
            raise VaultError("this vault has no key file to write to")
        file_keys = {kid: key for kid, key in keys.items() if kid not in self._env_key_ids}
        temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            _write_new(temp, _serialise(active, file_keys))
            os.replace(temp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink()
            reason = exc.strerror or type(exc).__name__
            raise VaultError(f"key file {path} cannot be written: {reason}") from exc
        _fsync_dir(path.parent)

    # ----- secrets

    def encrypt(self, secret: Secret, *, bound_to: str) -> str:
        """A token holding the secret, readable only with the same `bound_to` and a key still in the ring."""
        _check_bound_to(bound_to)
        key_id = self._active
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = AESGCM(self._keys[key_id]).encrypt(nonce, secret.reveal().encode("utf-8"),
                                                    _aad(key_id, bound_to))
        return f"{TOKEN_VERSION}.{key_id}.{_b64(nonce + sealed)}"

    def decrypt(self, token: str, *, bound_to: str) -> Secret:
        _check_bound_to(bound_to)
        key_id, blob = _split(token)
        key = self._keys.get(key_id)
        if key is None:
            source = f"key file {self._key_file}" if self._key_file else ENV_VAR
            raise VaultError(
                f"the secret for {bound_to} was encrypted with key {key_id}, which is not in the keyring "
                f"(known: {sorted(self._keys)}); it was retired, or {source} is not the one it was "
                "written with"
            )
        if len(blob) < NONCE_BYTES + TAG_BYTES:
            raise VaultError(f"the secret for {bound_to} is truncated")
        try:
            plain = AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _aad(key_id, bound_to))
        except InvalidTag as exc:
            raise VaultError(
                f"the secret for {bound_to} fails authentication: it was altered, or it belongs to another "
                "connection or field"
            ) from exc
        try:
            return Secret(plain.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise VaultError(f"the secret for {bound_to} is not text") from exc

    def reencrypt(self, token: str, *, bound_to: str) -> str:
        """The same secret under the active key (with a fresh nonce)."""
        return self.encrypt(self.decrypt(token, bound_to=bound_to), bound_to=bound_to)


def _serialise(active: str, keys: Mapping[str, bytes]) -> bytes:
    document = {
        "version": 1,
        "active": active,
        "keys": {kid: base64.b64encode(key).decode("ascii") for kid, key in sorted(keys.items())},
    }
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


def _check_bound_to(bound_to: str) -> None:
    if not bound_to:
        raise VaultError("a secret must be bound to a connection and field (bound_to is empty)")


def _split(token: str) -> tuple[str, bytes]:
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_VERSION or not parts[1]:
        raise VaultError(f"not a vault token (expected {TOKEN_VERSION}.<key id>.<data>)")
    try:
        return parts[1], _unb64(parts[2])
    except (binascii.Error, ValueError) as exc:
        raise VaultError("a vault token's data is not valid base64") from exc
