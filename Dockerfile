# syntax=docker/dockerfile:1
# viva-ratelimit: the Envoy rate-limit sidecar, as a slim non-root image.
#
#   docker build -t viva-ratelimit .
#   docker run --rm -p 8080:8080 -p 8081:8081 -p 6070:6070 viva-ratelimit
#   docker run --rm -v "$PWD/my-rules:/etc/viva-ratelimit/config:ro" \
#       -e REDIS_URL=redis:6379 viva-ratelimit
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
LABEL org.opencontainers.image.title="viva-ratelimit" \
      org.opencontainers.image.description="Envoy RateLimitService sidecar (envoyproxy/ratelimit-compatible)" \
      org.opencontainers.image.licenses="Apache-2.0"

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
