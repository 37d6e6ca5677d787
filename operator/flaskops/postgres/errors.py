"""What PostgreSQL access raises: one class per condition reason, each safe to show a tenant via `public`.

No driver here: callers (reconcile, metrics, the server check) catch these without importing psycopg.
"""

from __future__ import annotations

from flaskops import ownership

__all__ = [
    "AdminAuthFailed",
    "AdminPermissionDenied",
    "DatabaseUnavailable",
    "NotOwned",
    "ProvisioningFailed",
    "ReservedName",
]


class DatabaseUnavailable(Exception):
    """The server could not do what was asked.

    `reason` is the whole story for the operator's log (never a password); `public` is what a tenant may
    read in conditions and Events: nothing of the admin role, other tenants' roles or the server's text.
    """

    # The `reason` field of the DatabaseReady condition for this failure.
    condition_reason = "DatabaseUnavailable"

    def __init__(self, reason: str, public: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.public = (
            public or "the database server could not complete provisioning; the operator log has the details"
        )


class AdminAuthFailed(DatabaseUnavailable):
    """The server refused the admin credentials from the PostgresServer's admin Secret."""

    condition_reason = "AdminAuthFailed"


class AdminPermissionDenied(DatabaseUnavailable):
    """The admin role lacks a privilege it needs (CREATEROLE, CREATEDB, or ownership)."""

    condition_reason = "AdminPermissionDenied"


class ProvisioningFailed(DatabaseUnavailable):
    """The server answered but refused a statement for another reason, e.g. objects still use the role."""

    condition_reason = "ProvisioningFailed"


class NotOwned(ProvisioningFailed):
    """The role or database is reserved or belongs to someone else: nothing was changed.

    `condition_reason` is the refusal's reason (ReservedName, RoleOwnedElsewhere, DatabaseOwnedElsewhere);
    the message is already safe to show a tenant.
    """

    def __init__(self, refusal: ownership.Refusal) -> None:
        super().__init__(refusal.message, refusal.message)
        self.condition_reason = refusal.reason


class ReservedName(ValueError):
    """An app names a database or role that is reserved by name alone (`ownership.reserved_names`).

    Raised before any server is contacted; `refusal` carries the condition reason (ReservedName) and a
    message safe for the tenant.
    """

    def __init__(self, refusal: ownership.Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal
