"""Full mode's web pages: the provider's dashboard (/dashboard) and the customer's
self-service portal (/portal), rendered on the server (Jinja2), charts as inline SVG; the
forms work without JavaScript, and nothing is fetched from another origin.

    sessions.py   sessions and one-time portal links in the catalog database (hashed)
    security.py   cookies, same-origin and CSRF checks, response headers (CSP, no-store)
    pages.py      a section's shared wrappers: session → visit, POST checks, error pages
    dashboard.py  sign-in with a root key (scope dashboard), overview, plans, audit log
    customers.py  the dashboard's customer and key pages and actions
    portal.py     the portal, and POST /v1/portal/sessions (the admin call making a link)
    usage.py      the UsageSource seam (LiveDecisions until the ledger), limits used now
    charts.py     SVG charts: decisions over time by code, usage of each limit
    queries.py    read-only queries the pages need (search, counts, names)
    forms.py      form fields → the admin API's request types
    render.py     the Jinja2 environment and filters
    site.py       wiring, static files
"""
