#!/bin/sh
# Forms the Redis Cluster once every node answers: masters from the first nodes, one replica set
# per master from the rest (redis-cli --cluster create). Run by the chart's post-install and
# post-upgrade Job; a cluster already formed is left alone, so reruns are harmless.
#
# NODES      host:port of every node, space-separated
# REPLICAS   replicas per master
# WAIT       seconds to wait for the nodes (default 300)
# REDISCLI_AUTH  the password, when the nodes have one (redis-cli reads it from there)
set -eu

wait_for=${WAIT:-300}
first=${NODES%% *}

cli() {
  address=$1
  shift
  redis-cli -h "${address%:*}" -p "${address##*:}" "$@"
}

# CLUSTER MEET takes addresses, so each node's name is resolved once it answers.
resolve() {
  host=${1%:*}
  ip=$(getent hosts "$host" | awk 'NR == 1 { print $1 }')
  echo "${ip:-$host}:${1##*:}"
}

deadline=$(($(date +%s) + wait_for))
addresses=""
for node in $NODES; do
  until [ "$(cli "$node" ping 2>/dev/null)" = "PONG" ]; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "redis-cluster-bootstrap: $node did not answer PING within ${wait_for}s" >&2
      exit 1
    fi
    sleep 2
  done
  addresses="$addresses $(resolve "$node")"
done

if cli "$first" cluster info | grep -q '^cluster_state:ok'; then
  echo "redis-cluster-bootstrap: the cluster is already formed"
  cli "$first" cluster info | grep -E '^cluster_(state|known_nodes|size):'
  exit 0
fi

# shellcheck disable=SC2086  # one argument per node
redis-cli --cluster create $addresses --cluster-replicas "$REPLICAS" --cluster-yes

until cli "$first" cluster info | grep -q '^cluster_state:ok'; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "redis-cluster-bootstrap: the cluster did not reach cluster_state:ok" >&2
    exit 1
  fi
  sleep 1
done
cli "$first" cluster info | grep -E '^cluster_(state|known_nodes|size):'
