"""The REST API of standalone mode: /v1/check, /v1/report, /v1/forward-auth, /openapi.json.

Loading ``options`` (as the settings do) loads nothing else of this package: no aiohttp."""
