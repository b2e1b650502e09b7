"""The catalog in SQL: models, the async engine and Alembic migrations (shipped as package
data, applied at start-up and by ``viva-ratelimit db upgrade``)."""
