"""Security: the Secret type, the credential vault, the one redaction module and dashboard auth."""

from snapbridge.security.auth import (
    API_TOKEN_PREFIX,
    MIN_PASSWORD_LENGTH,
    AddressThrottle,
    LockoutPolicy,
    Passwords,
    Role,
    check_new_password,
    check_username,
    csrf_token,
    csrf_valid,
    new_api_token,
    new_session_token,
    token_digest,
)
from snapbridge.security.redact import (
    REDACTED,
    RedactingFilter,
    is_sensitive_name,
    redact_headers,
    redact_json,
    redact_json_text,
    redact_text,
    redact_url,
)
from snapbridge.security.secret import Secret
from snapbridge.security.vault import Vault, generate_key

__all__ = [
    "API_TOKEN_PREFIX",
    "AddressThrottle",
    "LockoutPolicy",
    "MIN_PASSWORD_LENGTH",
    "Passwords",
    "REDACTED",
    "RedactingFilter",
    "Role",
    "Secret",
    "Vault",
    "check_new_password",
    "check_username",
    "csrf_token",
    "csrf_valid",
    "generate_key",
    "is_sensitive_name",
    "new_api_token",
    "new_session_token",
    "redact_headers",
    "redact_json",
    "redact_json_text",
    "redact_text",
    "redact_url",
    "token_digest",
]
