"""Usage metering (full mode): decisions counted where they are made, usage reported by the
API provider, both read back per hour, day or month and priced by billing/.

    counter.py   the hot path: decisions counted in memory per (customer, key, refusing
                 limit, outcome, plan, hour); no SQL, no Redis round trip
    checks.py    /v1/check, /v1/report and /v1/forward-auth decisions in a namespace a
                 customer owns: the owners in memory and the service's observer
    flusher.py   writes the counts to the ledger every VIVA_USAGE_FLUSH_INTERVAL (10 s) and
                 on a clean stop; a batch that fails is retried under the same id
    ledger.py    the decisions ledger in SQL: ``+=`` upserts (exact with N instances), reads
    events.py    POST /v1/usage/events: checks, idempotency by event id, closed periods
    series.py    GET /v1/usage: decisions and a meter per hour, day or month
    limits.py    a customer's usage against each of its limits now, and its meters this
                 period (what alerts read)
    api.py       the HTTP handlers
"""
