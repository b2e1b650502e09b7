#!/bin/sh
# One node of the chart's Redis Cluster: its configuration file, plus the name it announces
# (clients are redirected to <pod>.<headless service>, which survives a new pod IP) and the
# password when there is one (as arguments: redis-server rewrites its process title, so they
# do not stay visible in ps).
#
# REDIS_CONF       the configuration file
# ANNOUNCE_HOST    the name other nodes and clients use for this node
# REDIS_PASSWORD   requirepass and masterauth (optional)
set -eu

if [ -n "${REDIS_PASSWORD:-}" ]; then
  exec redis-server "$REDIS_CONF" --cluster-announce-hostname "$ANNOUNCE_HOST" \
    --requirepass "$REDIS_PASSWORD" --masterauth "$REDIS_PASSWORD" "$@"
fi
exec redis-server "$REDIS_CONF" --cluster-announce-hostname "$ANNOUNCE_HOST" "$@"
