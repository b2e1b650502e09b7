# syntax=docker/dockerfile:1
# viva/rate-limiter: the rate-limit service (Envoy RLS, REST, forward-auth), as a slim non-root
# image.
#
#   docker build -t viva/rate-limiter:0.1.0 -t viva/rate-limiter:latest \
#       --build-arg REVISION="$(git rev-parse HEAD)" \
#       --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" .
#   docker run --rm -p 8080:8080 -p 8081:8081 -p 6070:6070 viva/rate-limiter:latest
#   docker run --rm -v "$PWD/my-rules:/etc/viva-ratelimit/config:ro" \
#       -e REDIS_ADDR=redis:6379 -e MODE=standalone viva/rate-limiter:latest
#
# Two stages: the builder turns the source into one wheel; the final stage installs that wheel
# (its dependencies come as binary wheels only, so no compiler is ever needed) into a venv and
# keeps nothing else. tests/deploy/test_image.py replays these steps for real (no Docker needed).

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# --- builder: source -> wheel ----------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder
WORKDIR /src
# Only what the wheel is built from (README.md is the package's long description).
COPY pyproject.toml README.md ./
COPY sidecar/ sidecar/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- final: the wheel in a venv, run as an unprivileged user -----------------------------------
FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
# The package's version (pyproject.toml) is the image's; the commit and build time are given by
# the build (see above) and stay empty otherwise.
ARG VERSION=0.1.0
ARG REVISION=""
ARG CREATED=""
LABEL org.opencontainers.image.title="viva/rate-limiter" \
      org.opencontainers.image.description="Viva Rate Limiter: Envoy RateLimitService (envoyproxy/ratelimit-compatible), REST and forward-auth" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.vendor="Viva" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    VIVA_CONFIG_DIR=/etc/viva-ratelimit/config

# The wheel is bind-mounted from the builder, so it never lands in a layer of this image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --only-binary=:all: /wheels/*.whl \
    && groupadd --system --gid 10001 ratelimit \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin ratelimit

# Default rules; mount a directory (e.g. a Kubernetes ConfigMap) over this path to replace them.
COPY --chown=root:root config/ /etc/viva-ratelimit/config/

# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001

# HTTP (/healthcheck, /json, /rlconfig, /metrics), gRPC (RateLimitService, health), debug.
EXPOSE 8080 8081 6070

# No curl in a slim image: the stdlib asks /healthcheck (PORT when it was moved). An HTTP error
# (500 while draining or unhealthy) raises, so the exit status is non-zero.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthcheck' % os.environ.get('PORT', '8080'), timeout=2)"]

# SIGTERM: health fails at once, in-flight calls get VIVA_SHUTDOWN_GRACE to finish.
STOPSIGNAL SIGTERM
ENTRYPOINT ["viva-ratelimit"]
CMD ["serve"]
