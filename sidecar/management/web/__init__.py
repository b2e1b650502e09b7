"""Full mode's web pages: the provider's dashboard (/dashboard) and the customer's
self-service portal (/portal), rendered on the server (Jinja2), charts as inline SVG; the
forms work without JavaScript, and nothing is fetched from another origin.

    sessions.py    sessions and one-time portal links in the catalog database (hashed)
    security.py    cookies, same-origin and CSRF checks, response headers (CSP, no-store)
    pages.py       a section's shared wrappers: session → visit, POST checks, error pages
    dashboard.py   sign-in with a root key (scope dashboard), overview, plans, audit log
    customers.py   the dashboard's customer, key and invoice pages and actions
    webhooks.py    the dashboard's webhook endpoints, deliveries and retries
    portal.py      the portal, and POST /v1/portal/sessions (the admin call making a link)
    usage.py       decisions from the usage ledger, limits used now, billing periods
    usage_view.py  a customer's usage as its pages show it (dashboard and portal alike)
    invoices.py    a customer's invoices, as billing's printable page or CSV
    charts.py      SVG charts: decisions over time by code, bars of used against allowed
    queries.py     read-only queries the pages need (search, counts, names, alerts, failures)
    forms.py       form fields → the admin API's request types
    render.py      the Jinja2 environment and filters
    site.py        wiring, static files
"""
