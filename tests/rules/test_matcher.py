"""Descriptor matching and stats keys: one table over every rule of the reference's §2.

Each row is (rule set, request descriptor, expected limit or None, expected stats key). A limit
is written (requests_per_unit, unit, name); an unlimited one as ("unlimited", name).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from sidecar.limiter.keys import descriptor_key
from sidecar.model import Entries
from sidecar.rules.loader import RuleFile, build_rules
from sidecar.rules.matcher import Match, match_descriptor, override_stats_key, wildcard_match
from sidecar.rules.model import RuleSet

RULES = {
    # Precedence, depth, placeholders, whitelisting, no backtracking, names, unlimited.
    "shop": """
domain: shop
descriptors:
  - key: tenant                 # placeholder: children only
    value: acme
    descriptors:
      - key: path
        rate_limit: {unit: second, requests_per_unit: 5}
      - key: path
        value: /checkout
        rate_limit: {unit: second, requests_per_unit: 10}
  - key: client                 # key-only default
    rate_limit: {unit: minute, requests_per_unit: 20}
  - key: client
    value: mobile
    rate_limit: {unit: minute, requests_per_unit: 30}
  - key: client                 # whitelisted: exact entry without a limit
    value: internal
  - key: plan
    value: free
    rate_limit: {unit: hour, requests_per_unit: 1}
  - key: plan
    value: gold
    rate_limit: {unit: day, requests_per_unit: 1, name: gold_daily}
  - key: plan
    value: staff
    rate_limit: {unlimited: true, name: staff_free}
  - key: region                 # exact node with children ...
    value: eu
    descriptors:
      - key: zone
        value: a
        rate_limit: {unit: minute, requests_per_unit: 3}
  - key: region                 # ... and a default one: never tried once 'eu' matched
    descriptors:
      - key: zone
        rate_limit: {unit: minute, requests_per_unit: 7}
  - key: account                # a limit with children: only a 1-entry request gets it
    rate_limit: {unit: hour, requests_per_unit: 100}
    descriptors:
      - key: user
        rate_limit: {unit: hour, requests_per_unit: 10}
  - key: order_id               # a '_' in the key is not escaped: (order, id) builds 'order_id'
    rate_limit: {unit: second, requests_per_unit: 2}
""",
    # Wildcards: '*' anywhere, any number of times, first match in config order.
    "wild": """
domain: wild
descriptors:
  - key: bucket
    rate_limit: {unit: second, requests_per_unit: 1}
  - key: bucket
    value: img*
    rate_limit: {unit: second, requests_per_unit: 2}
  - key: bucket
    value: im*
    rate_limit: {unit: second, requests_per_unit: 3}
  - key: bucket
    value: images
    rate_limit: {unit: second, requests_per_unit: 4}
  - key: file
    value: v*x
    rate_limit: {unit: minute, requests_per_unit: 5}
  - key: path
    value: /api/*/users/*/posts
    rate_limit: {unit: minute, requests_per_unit: 6}
  - key: host
    value: "*.example.com"
    rate_limit: {unit: minute, requests_per_unit: 7}
  - key: any
    value: "*"
    rate_limit: {unit: minute, requests_per_unit: 8}
  - key: exact
    value: foo
    rate_limit: {unit: minute, requests_per_unit: 9}
  - key: twin
    value: ab*ba
    rate_limit: {unit: minute, requests_per_unit: 10}
  - key: team
    value: red
    descriptors:
      - key: user
        value: bot*
        rate_limit: {unit: hour, requests_per_unit: 11}
""",
    # shadow_mode belongs to the descriptor that holds the limit; replaces travel with it.
    "flags": """
domain: flags
descriptors:
  - key: api
    shadow_mode: true
    rate_limit: {unit: minute, requests_per_unit: 20}
  - key: api
    value: v2
    rate_limit: {unit: minute, requests_per_unit: 30}
  - key: account
    value: banned
    rate_limit: {unit: minute, requests_per_unit: 0, name: banned}
  - key: override
    rate_limit:
      unit: minute
      requests_per_unit: 2
      name: override
      replaces: [{name: banned}, {name: legacy}]
""",
    # detailed_metric: the stats key carries the request's values (TC-05).
    "detail": """
domain: detail
descriptors:
  - key: caller
    detailed_metric: true
    rate_limit: {unit: minute, requests_per_unit: 70}
  - key: route
    descriptors:
      - key: method
        detailed_metric: true
        rate_limit: {unit: minute, requests_per_unit: 71}
  - key: ip
    value: "10.*"
    detailed_metric: true
    rate_limit: {unit: minute, requests_per_unit: 72}
""",
    # value_to_metric (TC-11).
    "v2m": """
domain: v2m
descriptors:
  - key: route
    value_to_metric: true
    descriptors:
      - key: http_method
        value_to_metric: true
        descriptors:
          - key: subject_id
            rate_limit: {unit: minute, requests_per_unit: 60}
  - key: page
    value_to_metric: true
    descriptors:
      - key: http_method
        value_to_metric: true
        descriptors:
          - key: subject_id
            detailed_metric: true
            rate_limit: {unit: minute, requests_per_unit: 61}
  - key: user
    value_to_metric: true
    descriptors:
      - key: action
        value: read*
        value_to_metric: true
        descriptors:
          - key: resource
            rate_limit: {unit: minute, requests_per_unit: 62}
  - key: k1
    descriptors:
      - key: k2
        value_to_metric: true
        descriptors:
          - key: k3
            rate_limit: {unit: minute, requests_per_unit: 63}
  - key: tier
    value_to_metric: true
    descriptors:
      - key: sku
        value: "ab*"
        descriptors:
          - key: qty
            rate_limit: {unit: minute, requests_per_unit: 64}
  - key: lane
    value: "*"
    value_to_metric: true
    descriptors:
      - key: car
        rate_limit: {unit: minute, requests_per_unit: 65}
""",
    # share_threshold (TC-12).
    "share": """
domain: share
descriptors:
  - key: files
    value: files/*
    share_threshold: true
    rate_limit: {unit: minute, requests_per_unit: 100}
  - key: file
    value: test1
    rate_limit: {unit: minute, requests_per_unit: 50}
  - key: file
    value: test*
    share_threshold: true
    rate_limit: {unit: minute, requests_per_unit: 100}
  - key: route
    value: api/*
    share_threshold: true
    descriptors:
      - key: method
        rate_limit: {unit: minute, requests_per_unit: 20}
  - key: service
    value: svc/*
    share_threshold: true
    descriptors:
      - key: endpoint
        detailed_metric: true
        rate_limit: {unit: minute, requests_per_unit: 30}
  - key: doc_type
    value: pdf*
    share_threshold: true
    value_to_metric: true
    rate_limit: {unit: minute, requests_per_unit: 40}
  - key: files_no_share
    value: files/*
    rate_limit: {unit: hour, requests_per_unit: 10}
""",
    # The reference README's examples, in our own words.
    "readme": """
domain: messaging
descriptors:
  # At most 5 marketing messages a day to one number.
  - key: message_type
    value: marketing
    descriptors:
      - key: to_number
        rate_limit: {unit: day, requests_per_unit: 5}
  # At most 100 messages a day to any one number: a key-only default per phone number.
  - key: to_number
    rate_limit: {unit: day, requests_per_unit: 100}
""",
    "readme_db": """
domain: database_cps
descriptors:
  - key: database
    value: users
    rate_limit: {unit: second, requests_per_unit: 500}
  - key: database
    value: default
    rate_limit: {unit: second, requests_per_unit: 500}
  - key: database
    value: reports
    descriptors:
      - key: query_type
        value: write
        rate_limit: {unit: minute, requests_per_unit: 10}
      - key: query_type
        rate_limit: {unit: minute, requests_per_unit: 100}
""",
    "readme_ip": """
domain: edge_proxy_per_ip
descriptors:
  - key: remote_address
    rate_limit: {unit: second, requests_per_unit: 10}
  - key: remote_address     # a blocked address
    value: 50.0.0.5
    rate_limit: {unit: second, requests_per_unit: 0}
""",
}


@cache
def rules_for(name: str) -> RuleSet:
    return build_rules([RuleFile(f"{name}.yaml", RULES[name])])


def match(name: str, entries: Entries) -> Match | None:
    rules = rules_for(name)
    (domain,) = rules.domains
    return match_descriptor(rules.domains[domain], domain, entries)


def summary(found: Match | None) -> tuple[Any, ...] | None:
    if found is None:
        return None
    limit = found.limit
    if limit.unlimited:
        return ("unlimited", limit.name)
    return (limit.requests_per_unit, limit.unit.name.lower(), limit.name)


def e(*pairs: str) -> Entries:
    """e("k1", "v1", "k2", "v2") -> (("k1", "v1"), ("k2", "v2"))."""
    return tuple(zip(pairs[::2], pairs[1::2], strict=True))


CASES: list[tuple[str, str, Entries, tuple[Any, ...] | None, str | None]] = [
    # -- precedence: exact > key-only; placeholders; whitelisting ---------------------------------
    ("no-default-for-key", "shop", e("tenant", "other"), None, None),
    ("placeholder-has-no-limit", "shop", e("tenant", "acme"), None, None),
    ("key-only-default", "shop", e("client", "web"), (20, "minute", ""), "shop.client"),
    ("exact-beats-default", "shop", e("client", "mobile"), (30, "minute", ""),
     "shop.client_mobile"),
    ("whitelisted-exact", "shop", e("client", "internal"), None, None),
    ("empty-value-takes-default", "shop", e("client", ""), (20, "minute", ""), "shop.client"),
    ("unknown-key", "shop", e("nothing", "here"), None, None),
    ("no-entries", "shop", (), None, None),
    # -- nesting and depth -------------------------------------------------------------------------
    ("nested-default", "shop", e("tenant", "acme", "path", "/cart"), (5, "second", ""),
     "shop.tenant_acme.path"),
    ("nested-exact", "shop", e("tenant", "acme", "path", "/checkout"), (10, "second", ""),
     "shop.tenant_acme.path_/checkout"),
    ("request-deeper-than-leaf", "shop", e("client", "web", "extra", "x"), None, None),
    ("request-deeper-than-tree", "shop", e("tenant", "acme", "path", "/checkout", "x", "y"), None,
     None),
    ("request-shallower-than-limit", "shop", e("region", "us"), None, None),
    ("parent-limit-for-one-entry", "shop", e("account", "a1"), (100, "hour", ""), "shop.account"),
    ("child-limit-for-two-entries", "shop", e("account", "a1", "user", "u1"), (10, "hour", ""),
     "shop.account.user"),
    ("default-branch", "shop", e("region", "us", "zone", "b"), (7, "minute", ""),
     "shop.region.zone"),
    ("exact-branch", "shop", e("region", "eu", "zone", "a"), (3, "minute", ""),
     "shop.region_eu.zone_a"),
    ("no-backtracking", "shop", e("region", "eu", "zone", "b"), None, None),
    ("underscores-are-not-escaped", "shop", e("order", "id"), (2, "second", ""), "shop.order_id"),
    # -- names and unlimited -----------------------------------------------------------------------
    ("plain", "shop", e("plan", "free"), (1, "hour", ""), "shop.plan_free"),
    ("named", "shop", e("plan", "gold"), (1, "day", "gold_daily"), "shop.plan_gold"),
    ("unlimited", "shop", e("plan", "staff"), ("unlimited", "staff_free"), "shop.plan_staff"),
    # -- wildcards ---------------------------------------------------------------------------------
    ("wild-first-in-config-order", "wild", e("bucket", "img1"), (2, "second", ""),
     "wild.bucket_img*"),
    ("wild-second-pattern", "wild", e("bucket", "im"), (3, "second", ""), "wild.bucket_im*"),
    ("exact-beats-wild", "wild", e("bucket", "images"), (4, "second", ""), "wild.bucket_images"),
    ("wild-falls-to-default", "wild", e("bucket", "docs"), (1, "second", ""), "wild.bucket"),
    ("wild-middle", "wild", e("file", "v12x"), (5, "minute", ""), "wild.file_v*x"),
    ("wild-middle-empty", "wild", e("file", "vx"), (5, "minute", ""), "wild.file_v*x"),
    ("wild-middle-greedy-end", "wild", e("file", "vaxx"), (5, "minute", ""), "wild.file_v*x"),
    ("wild-middle-wrong-end", "wild", e("file", "va"), None, None),
    ("wild-middle-wrong-start", "wild", e("file", "xvx"), None, None),
    ("wild-many", "wild", e("path", "/api/v1/users/42/posts"), (6, "minute", ""),
     "wild.path_/api/*/users/*/posts"),
    ("wild-many-empty", "wild", e("path", "/api//users//posts"), (6, "minute", ""),
     "wild.path_/api/*/users/*/posts"),
    ("wild-many-missing-end", "wild", e("path", "/api/v1/users/42"), None, None),
    ("wild-many-missing-middle", "wild", e("path", "/api/v1/posts"), None, None),
    ("wild-leading", "wild", e("host", "shop.example.com"), (7, "minute", ""),
     "wild.host_*.example.com"),
    ("wild-leading-no-match", "wild", e("host", "example.org"), None, None),
    ("wild-star-matches-empty", "wild", e("any", ""), (8, "minute", ""), "wild.any_*"),
    ("wild-star-matches-text", "wild", e("any", "thing"), (8, "minute", ""), "wild.any_*"),
    ("no-eager-match", "wild", e("exact", "foo1"), None, None),
    ("literals-may-not-overlap", "wild", e("twin", "aba"), None, None),
    ("literals-meet", "wild", e("twin", "abba"), (10, "minute", ""), "wild.twin_ab*ba"),
    ("nested-wild", "wild", e("team", "red", "user", "bot-7"), (11, "hour", ""),
     "wild.team_red.user_bot*"),
    ("nested-wild-no-match", "wild", e("team", "red", "user", "alice"), None, None),
    # -- detailed_metric (TC-05) -------------------------------------------------------------------
    ("detailed", "detail", e("caller", "unspecified_value"), (70, "minute", ""),
     "detail.caller_unspecified_value"),
    ("detailed-other-value", "detail", e("caller", "another_value"), (70, "minute", ""),
     "detail.caller_another_value"),
    ("detailed-empty-value", "detail", e("caller", ""), (70, "minute", ""), "detail.caller_"),
    ("detailed-all-levels", "detail", e("route", "draw", "method", "GET"), (71, "minute", ""),
     "detail.route_draw.method_GET"),
    ("detailed-sanitized", "detail", e("ip", "10.1.2.3"), (72, "minute", ""), "detail.ip_10_1_2_3"),
    # -- value_to_metric (TC-11) -------------------------------------------------------------------
    ("v2m-all-levels", "v2m", e("route", "draw", "http_method", "GET", "subject_id", "123"),
     (60, "minute", ""), "v2m.route_draw.http_method_GET.subject_id"),
    ("v2m-empty-value", "v2m", e("route", "", "http_method", "GET", "subject_id", "123"),
     (60, "minute", ""), "v2m.route.http_method_GET.subject_id"),
    ("v2m-detailed-leaf-wins", "v2m", e("page", "draw", "http_method", "GET", "subject_id", "123"),
     (61, "minute", ""), "v2m.page_draw.http_method_GET.subject_id_123"),
    ("v2m-wildcard", "v2m", e("user", "alice", "action", "readfile", "resource", "r1"),
     (62, "minute", ""), "v2m.user_alice.action_readfile.resource"),
    ("v2m-mid-level-only", "v2m", e("k1", "X", "k2", "Y", "k3", "Z"), (63, "minute", ""),
     "v2m.k1.k2_Y.k3"),
    ("v2m-wildcard-without-flag-keeps-pattern", "v2m", e("tier", "gold", "sku", "ab12", "qty", "3"),
     (64, "minute", ""), "v2m.tier_gold.sku_ab*.qty"),
    ("v2m-wildcard-empty-value", "v2m", e("lane", "", "car", "c1"), (65, "minute", ""),
     "v2m.lane.car"),
    # -- share_threshold (TC-12) -------------------------------------------------------------------
    ("share-a", "share", e("files", "files/a.pdf"), (100, "minute", ""), "share.files_files/*"),
    ("share-b", "share", e("files", "files/b.csv"), (100, "minute", ""), "share.files_files/*"),
    ("share-c", "share", e("files", "files/c.txt"), (100, "minute", ""), "share.files_files/*"),
    ("share-exact-wins", "share", e("file", "test1"), (50, "minute", ""), "share.file_test1"),
    ("share-other-values", "share", e("file", "test2"), (100, "minute", ""), "share.file_test*"),
    ("share-nested-leaf", "share", e("route", "api/v1", "method", "GET"), (20, "minute", ""),
     "share.route_api/*.method"),
    ("share-detailed-leaf", "share", e("service", "svc/user", "endpoint", "get"),
     (30, "minute", ""), "share.service_svc/*.endpoint_get"),
    ("share-beats-v2m", "share", e("doc_type", "pdf-a4"), (40, "minute", ""),
     "share.doc_type_pdf*"),
    # -- the reference README's examples -----------------------------------------------------------
    ("readme-marketing", "readme", e("message_type", "marketing", "to_number", "2061234567"),
     (5, "day", ""), "messaging.message_type_marketing.to_number"),
    ("readme-per-number", "readme", e("to_number", "2061234567"), (100, "day", ""),
     "messaging.to_number"),
    ("readme-other-type-is-not-limited", "readme",
     e("message_type", "receipt", "to_number", "2061234567"), None, None),
    ("readme-db-users", "readme_db", e("database", "users"), (500, "second", ""),
     "database_cps.database_users"),
    ("readme-db-unknown", "readme_db", e("database", "archive"), None, None),
    ("readme-db-nested-exact", "readme_db", e("database", "reports", "query_type", "write"),
     (10, "minute", ""), "database_cps.database_reports.query_type_write"),
    ("readme-db-nested-default", "readme_db", e("database", "reports", "query_type", "read"),
     (100, "minute", ""), "database_cps.database_reports.query_type"),
    ("readme-ip-default", "readme_ip", e("remote_address", "10.0.0.1"), (10, "second", ""),
     "edge_proxy_per_ip.remote_address"),
    ("readme-ip-blocked", "readme_ip", e("remote_address", "50.0.0.5"), (0, "second", ""),
     "edge_proxy_per_ip.remote_address_50_0_0_5"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("rules", "entries", "limit", "stats_key"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_match(
    rules: str, entries: Entries, limit: tuple[Any, ...] | None, stats_key: str | None
) -> None:
    found = match(rules, entries)
    assert summary(found) == limit
    assert (found.stats_key if found else None) == stats_key


def test_unknown_domain_has_no_tree() -> None:
    assert "foo_domain" not in rules_for("shop").domains


def test_shadow_mode_is_not_inherited_from_the_key_only_sibling() -> None:
    default, exact = match("flags", e("api", "v1")), match("flags", e("api", "v2"))
    assert default is not None and exact is not None
    assert (default.limit.shadow_mode, exact.limit.shadow_mode) == (True, False)


def test_replaces_travel_with_the_limit() -> None:
    found = match("flags", e("override", "x"))
    assert found is not None
    assert (found.limit.name, found.limit.replaces) == ("override", ("banned", "legacy"))
    banned = match("flags", e("account", "banned"))
    assert banned is not None and banned.limit.name == "banned"


def test_limits_are_shared_objects_not_copies() -> None:
    # The hot path must not allocate a RateLimit per request.
    one, two = match("shop", e("client", "a")), match("shop", e("client", "b"))
    assert one is not None and two is not None and one.limit is two.limit


@pytest.mark.parametrize(
    ("entries", "shared"),
    [
        (e("files", "files/a.pdf"), ("files/*",)),
        (e("route", "api/v2", "method", "PUT"), ("api/*", None)),
        (e("file", "test1"), ()),  # exact match: no sharing
        (e("doc_type", "pdf-x"), ("pdf*",)),  # the key's '_' stays with the key
    ],
)
def test_share_threshold_values_replace_the_request_value(
    entries: Entries, shared: tuple[str | None, ...]
) -> None:
    found = match("share", entries)
    assert found is not None and found.shared_values == shared


def counter_keys(key: str, values: list[str]) -> set[str]:
    """The counter keys (window start 1234) that requests for ``values`` of ``key`` charge."""
    keys = set()
    for value in values:
        found = match("share", e(key, value))
        assert found is not None
        keys.add(descriptor_key("", "domain", e(key, value), found.shared_values) + "1234")
    return keys


def test_share_threshold_gives_one_counter_for_every_matching_value() -> None:
    values = ["files/a.pdf", "files/b.csv", "files/c.txt"]
    assert counter_keys("files", values) == {"domain_files_files/*_1234"}
    # TC-31: without share_threshold every value has its own counter.
    assert counter_keys("files_no_share", values) == {
        f"domain_files_no_share_{v}_1234" for v in values
    }


def test_shared_entry_beside_detailed_entries_with_empty_values() -> None:
    rules = build_rules([RuleFile("t.yaml", """
domain: d
descriptors:
  - key: svc
    value: "a*"
    share_threshold: true
    descriptors:
      - key: who
        detailed_metric: true
        rate_limit: {unit: second, requests_per_unit: 1}
""")])  # fmt: skip
    found = match_descriptor(rules.domains["d"], "d", e("svc", "abc", "who", ""))
    assert found is not None and found.stats_key == "d.svc_a*.who"


def test_override_stats_key_uses_request_values() -> None:
    assert override_stats_key("d", e("k1", "v1", "k2", "")) == "d.k1_v1.k2"
    assert override_stats_key("d", e("ip", "1.2.3.4", "p", "a:b|c")) == "d.ip_1_2_3_4.p_a_b_c"


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        ("k_foo*", "k_foo", True),
        ("k_foo*", "k_fo", False),
        ("k_*", "k_", True),
        ("k_*x*", "k_x", True),
        ("k_*x*", "k_y", False),
        ("k_a*b*c", "k_abc", True),
        ("k_a*b*c", "k_acb", False),
        ("k_a*b*c", "k_abbc", True),
        ("k_ab*ab", "k_ab", False),
        ("k_**", "k_z", True),
    ],
)
def test_wildcard_match(pattern: str, text: str, matches: bool) -> None:
    assert wildcard_match(tuple(pattern.split("*")), text) is matches
