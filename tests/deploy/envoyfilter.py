"""Istio EnvoyFilter objects → what Istio would hand Envoy, so the real binary can judge it.

``bootstrap_from`` applies the patches the way istiod does to a minimal SIDECAR_INBOUND
listener: the HTTP_FILTER patch goes before the router, the HTTP_ROUTE patch is merged into
the route (repeated fields appended, as proto merge does), the CLUSTER patch is added.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

Doc = dict[str, Any]

APPLY_TO = {"LISTENER", "FILTER_CHAIN", "NETWORK_FILTER", "HTTP_FILTER", "ROUTE_CONFIGURATION",
            "VIRTUAL_HOST", "HTTP_ROUTE", "CLUSTER", "EXTENSION_CONFIG", "BOOTSTRAP",
            "LISTENER_FILTER"}
CONTEXTS = {"ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY"}
OPERATIONS = {"INVALID", "MERGE", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER",
              "INSERT_FIRST", "REPLACE"}
HCM = "envoy.filters.network.http_connection_manager"
ROUTER = "envoy.filters.http.router"
HCM_TYPE = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
            "HttpConnectionManager")
ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
H2_OPTIONS = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    "explicit_http_config": {"http2_protocol_options": {}}}}


def patches(filters: Iterable[Doc], apply_to: str) -> list[Doc]:
    return [p for f in filters for p in f["spec"]["configPatches"] if p["applyTo"] == apply_to]


def only_patch(filters: Iterable[Doc], apply_to: str) -> Doc:
    found = patches(filters, apply_to)
    assert len(found) == 1, f"expected one {apply_to} patch, found {len(found)}"
    return found[0]


def proto_merge(base: Any, patch: Any) -> Any:
    """Proto3 merge of JSON-shaped values: messages merge, repeated fields append."""
    if isinstance(base, Mapping) and isinstance(patch, Mapping):
        out = dict(base)
        for key, value in patch.items():
            out[key] = proto_merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(patch, list):
        return [*base, *copy.deepcopy(patch)]
    return copy.deepcopy(patch)


def static_cluster(name: str, port: int, http2: bool = False) -> Doc:
    cluster: Doc = {
        "name": name, "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{
            "endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                        "port_value": port}}}}]}]}}
    if http2:
        cluster["typed_extension_protocol_options"] = copy.deepcopy(H2_OPTIONS)
    return cluster


def rate_limit_cluster_name(filters: Iterable[Doc]) -> str:
    value = only_patch(filters, "HTTP_FILTER")["patch"]["value"]
    service = value["typed_config"]["rate_limit_service"]["grpc_service"]
    return str(service["envoy_grpc"]["cluster_name"])


def bootstrap_from(filters: list[Doc], listen_port: int = 15006, app_port: int = 9080,
                   admin_port: int = 15000, rls_port: int | None = None) -> Doc:
    """A complete bootstrap: inbound listener → HCM [filters…, patched in before the router]
    → route (merged with the HTTP_ROUTE patch) → app cluster; plus the added cluster.

    ``rls_port`` moves the rate-limit cluster's endpoint (a test's free port). When the filter
    names a cluster no patch adds (Istio's own outbound cluster in standalone mode), a stand-in
    with HTTP/2 takes its place, as istiod would provide one.
    """
    http_filter = only_patch(filters, "HTTP_FILTER")
    route_patch = only_patch(filters, "HTTP_ROUTE")
    vhost = route_patch["match"]["routeConfiguration"]["vhost"]["name"]
    route = proto_merge({"name": "default", "match": {"prefix": "/"},
                         "route": {"cluster": f"inbound|{app_port}||", "timeout": "0s"}},
                        route_patch["patch"]["value"])
    clusters = [static_cluster(f"inbound|{app_port}||", app_port)]
    clusters += [copy.deepcopy(p["patch"]["value"]) for p in patches(filters, "CLUSTER")]
    wanted = rate_limit_cluster_name(filters)
    if not any(c["name"] == wanted for c in clusters):
        clusters.append(static_cluster(wanted, rls_port or 8081, http2=True))
    if rls_port is not None:
        for cluster in clusters:
            if cluster["name"] == wanted:
                endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
                endpoint["endpoint"]["address"]["socket_address"]["port_value"] = rls_port
    hcm = {
        "@type": HCM_TYPE, "stat_prefix": f"inbound_0.0.0.0_{app_port}",
        "route_config": {"name": f"inbound|{app_port}||",
                         "virtual_hosts": [{"name": vhost, "domains": ["*"],
                                            "routes": [route]}]},
        "http_filters": [copy.deepcopy(http_filter["patch"]["value"]),
                         {"name": ROUTER, "typed_config": {"@type": ROUTER_TYPE}}]}
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1",
                                                 "port_value": admin_port}}},
        "static_resources": {
            "listeners": [{"name": "virtualInbound",
                           "address": {"socket_address": {"address": "127.0.0.1",
                                                          "port_value": listen_port}},
                           "filter_chains": [{"filters": [{"name": HCM,
                                                           "typed_config": hcm}]}]}],
            "clusters": clusters}}


def descriptor_keys(rate_limit: Doc) -> list[str]:
    """The entry keys one route ``rate_limits`` item produces, in order."""
    keys = []
    for action in rate_limit["actions"]:
        (kind, spec), = action.items()
        if kind == "remote_address":
            keys.append("remote_address")
        elif kind == "generic_key":
            keys.append(spec.get("descriptor_key", "generic_key"))
        elif kind == "header_value_match":
            keys.append(spec.get("descriptor_key", "header_match"))
        elif kind == "request_headers":
            keys.append(spec["descriptor_key"])
        else:
            raise AssertionError(f"action {kind} is not covered by this check")
    return keys


def rule_paths(descriptors: list[Doc], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every key path of a rules tree that ends at a rate_limit."""
    paths: set[tuple[str, ...]] = set()
    for entry in descriptors:
        path = (*prefix, entry["key"])
        if "rate_limit" in entry:
            paths.add(path)
        paths |= rule_paths(entry.get("descriptors", []), path)
    return paths
