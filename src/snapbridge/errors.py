"""The one error tree of snapbridge, sorted by what the caller must do.

SnapbridgeError
├── InvalidInput      bad webhook, workflow file, setting or command line → 4xx, or exit code 2
│   └── UnsafeURL     a base URL or redirect points at an address the guard refuses
├── DeliveryError     a call to an app failed; holds operation, status, request id, redacted excerpt
│   ├── Retryable     network, 408, 425, 429, 5xx; carries retry_after
│   └── Permanent     auth, scope, validation, not found → dead letters
│       ├── AuthFailed      the credential is missing, unknown or revoked (401)
│       ├── ScopeMissing    the credential lacks a scope the operation needs
│       ├── NotFound        the object does not exist
│       └── Conflict        the object already exists (409); carries existing_id when the app names it
├── WebhookRejected   an inbound webhook failed authentication or verification
├── VaultError        a stored secret cannot be decrypted (tampered, swapped or unknown key)
└── StoreUnavailable  the database cannot commit → the sender is told to retry
"""

from __future__ import annotations


class SnapbridgeError(Exception):
    """Base of every error snapbridge raises on purpose."""


class InvalidInput(SnapbridgeError):
    """The input is wrong; retrying the same input fails the same way."""


class UnsafeURL(InvalidInput):
    """A configured URL resolves to an address that is refused unless allow-listed."""


class DeliveryError(SnapbridgeError):
    """A request to one of the apps failed."""

    def __init__(
        self,
        message: str,
        *,
        operation: str = "",
        status: int | None = None,
        request_id: str | None = None,
        excerpt: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.operation = operation
        self.status = status
        self.request_id = request_id
        self.excerpt = excerpt

    def __str__(self) -> str:
        where = f"{self.operation}: " if self.operation else ""
        status = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{where}{self.message}{status}"


class Retryable(DeliveryError):
    """A transient failure: the same request may succeed later."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        operation: str = "",
        status: int | None = None,
        request_id: str | None = None,
        excerpt: str = "",
    ) -> None:
        super().__init__(message, operation=operation, status=status, request_id=request_id, excerpt=excerpt)
        self.retry_after = retry_after


class Permanent(DeliveryError):
    """A failure that repeating the request cannot fix."""


class AuthFailed(Permanent):
    """The credential was refused."""


class ScopeMissing(Permanent):
    """The credential is valid but lacks a needed scope."""

    def __init__(
        self,
        message: str,
        *,
        scopes: tuple[str, ...] = (),
        operation: str = "",
        status: int | None = None,
        request_id: str | None = None,
        excerpt: str = "",
    ) -> None:
        super().__init__(message, operation=operation, status=status, request_id=request_id, excerpt=excerpt)
        self.scopes = scopes


class NotFound(Permanent):
    """The object asked for does not exist."""


class Conflict(Permanent):
    """The write clashes with an object that already exists; `existing_id` names it when the app says."""

    def __init__(
        self,
        message: str,
        *,
        existing_id: str | None = None,
        operation: str = "",
        status: int | None = None,
        request_id: str | None = None,
        excerpt: str = "",
    ) -> None:
        super().__init__(message, operation=operation, status=status, request_id=request_id, excerpt=excerpt)
        self.existing_id = existing_id


class WebhookRejected(SnapbridgeError):
    """An inbound webhook could not be authenticated or verified."""


class VaultError(SnapbridgeError):
    """A secret in the vault cannot be read."""


class StoreUnavailable(SnapbridgeError):
    """The store cannot commit; whoever sent the data must send it again."""
