"""The admin API's errors: each becomes ``{"error", "field"}`` with its HTTP status.

    AdminError           (status, message, field)
    ├── NotFound         404: no such customer / key (or not visible to the caller)
    ├── Conflict         409: the id is taken, the plan's max_keys is reached
    ├── Invalid          400: a field is wrong; ``field`` names it
    ├── Unauthorized     401: no valid root key
    ├── Forbidden        403: the root key lacks the scope
    └── Unavailable      503: a setting the call needs is missing (VIVA_SECRET_KEY)
"""

from __future__ import annotations


class AdminError(Exception):
    status = 500

    def __init__(self, message: str, field: str | None = None) -> None:
        self.message = message
        self.field = field
        super().__init__(message)


class NotFound(AdminError):
    status = 404


class Conflict(AdminError):
    status = 409


class Invalid(AdminError):
    status = 400


class Unauthorized(AdminError):
    status = 401


class Forbidden(AdminError):
    status = 403


class Unavailable(AdminError):
    status = 503
