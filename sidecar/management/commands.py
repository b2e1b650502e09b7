"""``viva-ratelimit db upgrade`` and ``viva-ratelimit admin create-root-key``."""

from __future__ import annotations

import asyncio
import sys
import time

from sqlalchemy.exc import SQLAlchemyError

from sidecar.errors import SettingsError
from sidecar.management.catalog import Catalog
from sidecar.management.db.connect import create_engine, database_url, sessions
from sidecar.management.db.migrate import upgrade
from sidecar.settings import Settings

# dashboard: sign in to /dashboard (its pages then need the scopes the admin API would);
# portal:write: hand a customer a one-time portal link (POST /v1/portal/sessions).
SCOPES = ("admin", "keys:write", "keys:read", "keys:verify", "customers:write",
          "customers:read", "usage:write", "usage:read", "billing:read", "billing:write",
          "webhooks:write", "webhooks:read", "dashboard", "portal:write")


def parse_scopes(text: str) -> list[str]:
    scopes = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in scopes if s not in SCOPES]
    if not scopes or unknown:
        raise SettingsError(f"--scopes {text!r}: {', '.join(unknown) or 'none given'} "
                            f"unknown; expected a comma-separated list of {', '.join(SCOPES)}")
    return scopes


def upgrade_database(settings: Settings) -> int:
    url = database_url(settings.database_url, settings.data_dir)

    async def run() -> str:
        engine = create_engine(url)
        try:
            return await upgrade(engine)
        finally:
            await engine.dispose()

    try:
        revision = asyncio.run(run())
    except (SQLAlchemyError, OSError) as exc:
        print(f"viva-ratelimit: cannot upgrade {url.render_as_string(hide_password=True)}: "
              f"{type(exc).__name__}", file=sys.stderr)
        return 1
    print(f"{url.render_as_string(hide_password=True)}: at revision {revision}")
    return 0


def create_root_key(settings: Settings, scopes_text: str, name: str | None) -> int:
    """Create a root key and print it once (migrating the database first if needed)."""
    scopes = parse_scopes(scopes_text)
    url = database_url(settings.database_url, settings.data_dir)

    async def run() -> tuple[str, str]:
        engine = create_engine(url)
        try:
            await upgrade(engine)
            catalog = Catalog(sessions(engine), lambda: None, time.time)
            return await catalog.add_root_key(None, scopes, name)
        finally:
            await engine.dispose()

    try:
        key_id, secret = asyncio.run(run())
    except (SQLAlchemyError, OSError) as exc:
        print(f"viva-ratelimit: cannot reach {url.render_as_string(hide_password=True)}: "
              f"{type(exc).__name__}", file=sys.stderr)
        return 1
    print(secret)
    print(f"root key {key_id} with scopes {', '.join(scopes)}; this is the only time the key "
          "is shown", file=sys.stderr)
    return 0
