"""Security: the Secret type, the credential vault and the one redaction module."""

from snapbridge.security.redact import (
    REDACTED,
    RedactingFilter,
    is_sensitive_name,
    redact_headers,
    redact_json,
    redact_text,
    redact_url,
)
from snapbridge.security.secret import Secret
from snapbridge.security.vault import Vault, generate_key

__all__ = [
    "REDACTED",
    "RedactingFilter",
    "Secret",
    "Vault",
    "generate_key",
    "is_sensitive_name",
    "redact_headers",
    "redact_json",
    "redact_text",
    "redact_url",
]
