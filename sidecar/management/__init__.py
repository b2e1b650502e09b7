"""Full mode (MODE=full): customers, API keys, plans, key verification, the admin API, usage
metering and billing.

Imported only by the composition root when the mode is ``full``; standalone code never imports
anything from here (an import-linter contract in pyproject.toml checks it), so a standalone
sidecar does not load SQLAlchemy, msgspec or the catalog.

    keys.py        key format: prefix, 128 random bits, checksum; SHA-256 at rest
    plans.py       plans YAML (checked and reloaded as the rules are), overrides, merging
    db/            SQLAlchemy models, the async engine, Alembic migrations (package data)
    catalog.py     the transactions of the admin API (every change audited and logged)
    namespaces.py  rules namespaces a customer owns (its /v1/check decisions are its usage)
    cache.py       verified keys in memory, by key hash; the change-log poller
    verify.py      a key → plan limits → engine decision → a code from a closed list
    schemas.py     request/response types of the admin API (msgspec) and its OpenAPI
    admin.py       the admin REST handlers (aiohttp, mounted on the HTTP port)
    gateway.py     key verification for gateways: Envoy ext_authz (gRPC), forward-auth
    meters.py      what usage is measured in (requests, and the meters the plans declare)
    usage/         decisions counted in memory and flushed to a ledger; usage events; series
    billing/       prices, invoices, closing a billing period; CSV and printable HTML
    service.py     wires all of the above for the composition root
"""
