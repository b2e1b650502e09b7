"""Rules loader: every validation error with its full message, YAML 1.1 scalars, file discovery."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.errors import RuleSetError
from sidecar.model import RateLimit, Unit
from sidecar.rules.loader import RuleFile, build_rules, find_rule_files, load_rules
from sidecar.rules.model import RuleSet
from tests.rules.layouts import domain_yaml, make_configmap, write

FIXTURES = Path(__file__).parent / "fixtures"
COUNT = "expected a whole number from 0 to 4294967295 (0 refuses every request)"
UNITS = (
    "expected one of second, minute, hour, day, week, month, year (any case), or 'unlimited: true'"
)
DESCRIPTOR_KEYS = (
    "key, value, rate_limit, descriptors, shadow_mode, quota_mode, detailed_metric, "
    "value_to_metric, share_threshold, metadata"
)
RATE_LIMIT_KEYS = (
    "unit, requests_per_unit, unlimited, name, replaces, algorithm, burst, unit_multiplier, "
    "window, calendar, count_rejected, max, lease_ttl"
)
EMPTY_DOMAIN = (
    "domain: config file cannot have empty domain; expected 'domain: <name>' at the top of the file"
)


def fixture(name: str) -> RuleFile:
    return RuleFile(name, (FIXTURES / name).read_text())


def load(*names: str, merge: bool = False) -> RuleSet:
    return build_rules([fixture(n) for n in names], merge_domains=merge)


def errors(*names: str, merge: bool = False) -> list[str]:
    with pytest.raises(RuleSetError) as caught:
        load(*names, merge=merge)
    assert str(caught.value) == "\n".join(str(e) for e in caught.value.errors)
    return [str(e) for e in caught.value.errors]


def limits(rules: RuleSet) -> dict[str, RateLimit]:
    return dict(rules.iter_limits())


# -- one fixture per validation error -------------------------------------------------------------

ONE_ERROR = [
    (
        "bad_yaml.yaml",
        "bad_yaml.yaml:4: error loading config file: while parsing a block collection: "
        "did not find expected '-' indicator; expected valid YAML",
    ),
    ("empty_domain.yaml", f"empty_domain.yaml:2: {EMPTY_DOMAIN}"),
    ("empty_file.yaml", f"empty_file.yaml:1: {EMPTY_DOMAIN}"),
    ("comments_only.yaml", f"comments_only.yaml:1: {EMPTY_DOMAIN}"),
    ("no_domain.yaml", f"no_domain.yaml:1: {EMPTY_DOMAIN}"),
    (
        "empty_key.yaml",
        "empty_key.yaml:5: descriptors[0].descriptors[0].key: descriptor has empty key; "
        "expected 'key: <name>'",
    ),
    (
        "duplicate_key.yaml",
        "duplicate_key.yaml:9: descriptors[2]: duplicate descriptor composite key "
        "'bookings.channel_app' (first at descriptors[0], line 3); "
        "expected each key/value pair once per level",
    ),
    (
        "duplicate_nested_key.yaml",
        "duplicate_nested_key.yaml:8: descriptors[0].descriptors[1]: duplicate descriptor "
        "composite key 'bookings.channel_app.guest' (first at descriptors[0].descriptors[0], "
        "line 6); expected each key/value pair once per level",
    ),
    (
        "bad_unit.yaml",
        "bad_unit.yaml:5: descriptors[0].rate_limit.unit: invalid rate limit unit 'minutes'; "
        + UNITS,
    ),
    (
        "missing_unit.yaml",
        f"missing_unit.yaml:5: descriptors[0].rate_limit.unit: rate limit unit is missing; {UNITS}",
    ),
    (
        "unlimited_with_unit.yaml",
        "unlimited_with_unit.yaml:6: descriptors[0].rate_limit.unit: should not specify rate "
        "limit unit when unlimited; expected either 'unlimited: true' without a unit, or a unit",
    ),
    (
        "missing_requests_per_unit.yaml",
        "missing_requests_per_unit.yaml:5: descriptors[0].rate_limit.requests_per_unit: "
        f"requests_per_unit is missing; {COUNT}",
    ),
    (
        "null_requests_per_unit.yaml",
        "null_requests_per_unit.yaml:6: descriptors[0].rate_limit.requests_per_unit: "
        f"requests_per_unit has no value; {COUNT}",
    ),
    (
        "negative_requests_per_unit.yaml",
        "negative_requests_per_unit.yaml:6: descriptors[0].rate_limit.requests_per_unit: "
        f"-5 is out of range; {COUNT}",
    ),
    (
        "huge_requests_per_unit.yaml",
        "huge_requests_per_unit.yaml:6: descriptors[0].rate_limit.requests_per_unit: "
        f"4294967296 is out of range; {COUNT}",
    ),
    (
        "quoted_bool.yaml",
        "quoted_bool.yaml:4: descriptors[0].shadow_mode: the quoted text 'true' is not a "
        "boolean; expected true or false, without quotes",
    ),
    (
        "float_value.yaml",
        "float_value.yaml:4: descriptors[0].value: the number 2.1 is not a string; "
        "expected text (quote it: '2.1')",
    ),
    (
        "unknown_root_key.yaml",
        "unknown_root_key.yaml:2: descriptor: unknown key 'descriptor' (did you mean "
        "'descriptors'?); expected one of domain, descriptors, atomic, count_rejected, "
        "time_zone, failure_policy",
    ),
    (
        "unknown_descriptor_key.yaml",
        "unknown_descriptor_key.yaml:4: descriptors[0].ratelimit: unknown key 'ratelimit' "
        f"(did you mean 'rate_limit'?); expected one of {DESCRIPTOR_KEYS}",
    ),
    (
        # The typo is reported once: not again as "requests_per_unit is missing".
        "unknown_rate_limit_key.yaml",
        "unknown_rate_limit_key.yaml:6: descriptors[0].rate_limit.requestsperunit: unknown key "
        f"'requestsperunit' (did you mean 'requests_per_unit'?); expected one of {RATE_LIMIT_KEYS}",
    ),
    (
        "non_string_key.yaml",
        "non_string_key.yaml:6: descriptors[0].rate_limit: key '0.5' is not a string; "
        f"expected one of {RATE_LIMIT_KEYS}",
    ),
    (
        "non_map_list.yaml",
        "non_map_list.yaml:3: descriptors[0]: 'guest' is not a descriptor; expected a mapping "
        "with 'key' and optionally 'value', 'rate_limit', 'descriptors'",
    ),
    (
        "replaces_empty_name.yaml",
        "replaces_empty_name.yaml:9: descriptors[0].rate_limit.replaces[0].name: should not "
        "have an empty replaces entry; expected 'name: <name of another rate_limit>'",
    ),
    (
        "replaces_self.yaml",
        "replaces_self.yaml:10: descriptors[0].rate_limit.replaces[1].name: replaces should not "
        "contain name of same descriptor ('partner_limit'); expected the name of another "
        "rate_limit",
    ),
    (
        "share_threshold_without_wildcard.yaml",
        "share_threshold_without_wildcard.yaml:5: descriptors[0].share_threshold: "
        "share_threshold can only be used with wildcard values (containing '*'), but found key "
        "'path_/search'; expected a value with '*' such as 'prefix*', or no share_threshold",
    ),
    (
        "metadata_not_mapping.yaml",
        "metadata_not_mapping.yaml:4: descriptors[0].metadata: error parsing metadata: a list "
        "is not a mapping; expected a mapping of names to values",
    ),
    (
        "second_document.yaml",
        "second_document.yaml:6: a second YAML document ('---') in one file; expected one "
        "document per file; put each domain in its own file",
    ),
]


@pytest.mark.parametrize(("name", "message"), ONE_ERROR, ids=[n for n, _ in ONE_ERROR])
def test_validation_error_message(name: str, message: str) -> None:
    assert errors(name) == [message]


def test_error_carries_file_line_and_path() -> None:
    with pytest.raises(RuleSetError) as caught:
        load("bad_unit.yaml")
    (error,) = caught.value.errors
    assert (error.file, error.line, error.path) == (
        "bad_unit.yaml",
        5,
        "descriptors[0].rate_limit.unit",
    )
    assert "expected one of second" in error.problem


def test_every_problem_of_a_file_is_reported() -> None:
    assert errors("three_problems.yaml") == [
        f"three_problems.yaml:5: descriptors[0].rate_limit.unit: invalid rate limit unit "
        f"'fortnight'; {UNITS}",
        "three_problems.yaml:8: descriptors[1].detailed_metric: the quoted text 'yes' is not a "
        "boolean; expected true or false, without quotes",
        f"three_problems.yaml:11: descriptors[2].rate_limit.requests_per_unit: -1 is out of "
        f"range; {COUNT}",
    ]


def test_every_bad_file_of_a_load_is_reported() -> None:
    found = errors("three_problems.yaml", "scalars.yaml", "also_bad.yaml")
    assert [e.split(":")[0] for e in found] == ["three_problems.yaml"] * 3 + ["also_bad.yaml"]
    assert found[-1] == (
        "also_bad.yaml:4: descriptors[0].rate_limit.requests_per_unit: requests_per_unit is "
        f"missing; {COUNT}"
    )


def test_problems_inside_a_descriptor_without_key_are_still_reported() -> None:
    text = "domain: d\ndescriptors:\n  - value: x\n    rate_limit: {unit: parsec}\n"
    found = [str(e) for e in _raises(text).errors]
    assert found == [
        "t.yaml:3: descriptors[0].key: descriptor has empty key; expected 'key: <name>'",
        f"t.yaml:4: descriptors[0].rate_limit.unit: invalid rate limit unit 'parsec'; {UNITS}",
        f"t.yaml:4: descriptors[0].rate_limit.requests_per_unit: requests_per_unit is missing; "
        f"{COUNT}",
    ]


# -- domains across files -------------------------------------------------------------------------


def test_duplicate_domain_across_files() -> None:
    assert errors("bookings.yaml", "bookings_again.yaml") == [
        "bookings_again.yaml:1: domain: duplicate domain 'bookings' in config file (also in "
        "bookings.yaml); expected each domain in one file, or MERGE_DOMAIN_CONFIG=true to merge "
        "them"
    ]


def test_merged_domains_work() -> None:
    rules = load("bookings.yaml", "bookings_again.yaml", merge=True)
    assert set(limits(rules)) == {"bookings.guest", "bookings.hotel"}
    assert limits(rules)["bookings.hotel"].requests_per_unit == 500


def test_merging_the_same_file_twice_is_a_duplicate_composite_key() -> None:
    assert errors("bookings.yaml", "bookings.yaml", merge=True) == [
        "bookings.yaml:3: descriptors[0]: duplicate descriptor composite key 'bookings.guest' "
        "(also in bookings.yaml); expected each top-level key/value once per domain across "
        "merged files"
    ]


def test_merge_reports_the_clashing_descriptor_of_the_second_file() -> None:
    assert errors("bookings.yaml", "bookings_guest_again.yaml", merge=True) == [
        "bookings_guest_again.yaml:5: descriptors[1]: duplicate descriptor composite key "
        "'bookings.guest' (also in bookings.yaml); expected each top-level key/value once per "
        "domain across merged files"
    ]


# -- how scalars are read -------------------------------------------------------------------------


def test_scalars_are_read_from_their_raw_text_and_units_ignore_case() -> None:
    root = load("scalars.yaml").domains["scalars"]
    assert set(root.children) == {
        "code_123", "answer_yes", "flag_true", "since_2026-01-31", "anyone", "nobody", "blank",
    }  # fmt: skip
    units = {key: node.limit.unit for key, node in root.children.items() if node.limit}
    assert units == {
        "code_123": Unit.SECOND, "answer_yes": Unit.MINUTE, "flag_true": Unit.HOUR,
        "since_2026-01-31": Unit.DAY, "anyone": Unit.WEEK, "nobody": Unit.MONTH,
        "blank": Unit.YEAR,
    }  # fmt: skip
    assert root.children["blank"].limit is not None
    assert root.children["blank"].limit.requests_per_unit == 16  # 0x10, a YAML 1.1 integer


def test_null_value_is_a_key_only_entry() -> None:
    node = load("scalars.yaml").domains["scalars"].children["anyone"]
    assert (node.key, node.value, node.final_key) == ("anyone", "", "anyone")


def test_anchors_and_merge_keys() -> None:
    found = limits(load("anchors.yaml"))
    copy, tweaked = found["anchors.copy"], found["anchors.tweaked"]
    assert (copy.requests_per_unit, copy.unit, copy.name) == (60, Unit.MINUTE, "base_limit")
    assert (tweaked.requests_per_unit, tweaked.name) == (30, "tweaked_limit")  # its own keys win
    assert tweaked.unit == Unit.MINUTE  # merged from the anchor


def test_metadata_is_kept_with_dates_as_text() -> None:
    limit = limits(load("metadata.yaml"))["meta.tenant"]
    assert limit.metadata == {
        "owner": "team-bookings",
        "created": "2026-02-01",
        "tags": ["gold", "eu"],
        "limits": {"burst": 5, "ratio": 0.5, "strict": False, "note": None},
    }


def test_yaml_1_1_short_booleans_are_booleans() -> None:
    rules = _build("domain: d\ndescriptors:\n  - key: a\n    shadow_mode: y\n"
                   "    rate_limit: {unit: second, requests_per_unit: 1}\n")  # fmt: skip
    assert limits(rules)["d.a"].shadow_mode is True


def test_flags_belong_to_the_descriptor_that_holds_the_limit() -> None:
    rules = _build(
        "domain: d\ndescriptors:\n"
        "  - key: a\n    shadow_mode: true\n    quota_mode: true\n    detailed_metric: true\n"
        "    rate_limit: {unit: second, requests_per_unit: 1, name: a_limit}\n"
        "  - key: b\n    rate_limit: {unlimited: true, replaces: [{name: a_limit}]}\n"
    )
    a, b = limits(rules)["d.a"], limits(rules)["d.b"]
    assert (a.shadow_mode, a.quota_mode, a.detailed_metric, a.name) == (True, True, True, "a_limit")
    assert (b.unlimited, b.unit, b.requests_per_unit) == (True, Unit.UNKNOWN, 0)
    assert b.replaces == ("a_limit",)
    assert (b.shadow_mode, b.quota_mode, b.detailed_metric) == (False, False, False)


def test_null_blocks_are_absent() -> None:
    rules = _build(
        "domain: d\ndescriptors:\n  - key: a\n    rate_limit:\n    descriptors:\n"
        "  - key: b\n    rate_limit: {unit: hour, requests_per_unit: 2, replaces: ~}\n"
    )
    assert rules.domains["d"].children["a"].limit is None
    assert limits(rules)["d.b"].replaces == ()


def test_stats_key_is_the_sanitized_path() -> None:
    rules = _build("domain: edge\ndescriptors:\n  - key: remote_address\n    value: 50.0.0.5\n"
                   "    rate_limit: {unit: second, requests_per_unit: 0}\n")  # fmt: skip
    assert limits(rules)["edge.remote_address_50.0.0.5"].stats_key == "edge.remote_address_50_0_0_5"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "domain: d\ndescriptors:\n  - key: a\n    shadow_mode: !!bool maybe\n",
            "t.yaml:4: descriptors[0].shadow_mode: 'maybe' is not a boolean; expected true or "
            "false, without quotes",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: day, requests_per_unit: "
            "!!int many}\n",
            f"t.yaml:4: descriptors[0].rate_limit.requests_per_unit: 'many' is not a whole "
            f"number; {COUNT}",
        ),
        (
            "domain: d\ndescriptors: &loop\n  - key: a\n    descriptors: *loop\n",
            "t.yaml: descriptors nest too deeply (a recursive '*alias'?); expected a finite tree "
            "of descriptors",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    metadata: {? [x, y] : z}\n",
            "t.yaml:4: descriptors[0].metadata: error parsing metadata: found unhashable key; "
            "expected text, numbers, booleans, lists and mappings with text keys",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    key: b\n",
            "t.yaml:4: descriptors[0].key: key 'key' appears twice in this mapping; expected "
            "each key once",
        ),
        (
            "- domain: d\n",
            "t.yaml:1: a list is not a mapping; expected a mapping with keys domain, "
            "descriptors, atomic, count_rejected, time_zone, failure_policy",
        ),
        (
            "domain: d\ndescriptors: {key: a}\n",
            "t.yaml:2: descriptors: a mapping is not a list; expected a list of descriptors "
            "('- key: <name>')",
        ),
    ],
    ids=[
        "explicit-bool-tag",
        "explicit-int-tag",
        "recursive-alias",
        "unhashable-metadata-key",
        "repeated-key",
        "root-not-mapping",
        "descriptors-not-list",
    ],
)
def test_odd_yaml_is_an_error_not_a_crash(text: str, message: str) -> None:
    assert [str(e) for e in _raises(text).errors] == [message]


def test_trailing_document_marker_is_not_a_second_document() -> None:
    assert "d" in _build("domain: d\n---\n").domains


def test_version_follows_the_content() -> None:
    one = build_rules([fixture("bookings.yaml")])
    again = build_rules([fixture("bookings.yaml")])
    other = build_rules([RuleFile("bookings.yaml", fixture("bookings.yaml").text + "# edit\n")])
    assert one.version == again.version != other.version
    assert one.files == ("bookings.yaml",)


# -- files on disk --------------------------------------------------------------------------------


def test_only_yaml_files_are_read_and_nested_directories_are(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", domain_yaml("a"))
    write(tmp_path / "b.yml", domain_yaml("b"))
    write(tmp_path / "team" / "deep" / "c.yaml", domain_yaml("c"))
    write(tmp_path / "README.md", "not rules")
    write(tmp_path / "d.yaml.bak", "domain: [broken")
    write(tmp_path / "e.json", "{}")
    rules = load_rules(str(tmp_path))
    assert set(rules.domains) == {"a", "b", "c"}
    assert rules.files == tuple(str(tmp_path / p) for p in ("a.yaml", "b.yml", "team/deep/c.yaml"))


def test_dot_files_and_dot_directories_are_ignored(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", domain_yaml("a"))
    write(tmp_path / ".a.yaml.swp", "domain: [broken")
    write(tmp_path / ".hidden" / "b.yaml", domain_yaml("a"))
    assert set(load_rules(str(tmp_path)).domains) == {"a"}
    assert find_rule_files(str(tmp_path), include_dotfiles=True) == [
        str(tmp_path / "a.yaml"),
        str(tmp_path / ".hidden" / "b.yaml"),
    ]


def test_configmap_layout_loads_each_domain_once(tmp_path: Path) -> None:
    make_configmap(
        tmp_path, "10_00_00.1", {"config.yaml": domain_yaml("a"), "more.yaml": domain_yaml("b")}
    )
    rules = load_rules(str(tmp_path))
    assert set(rules.domains) == {"a", "b"}
    assert rules.files == (str(tmp_path / "config.yaml"), str(tmp_path / "more.yaml"))


def test_configmap_with_dotfiles_included_loads_twice_like_the_reference(tmp_path: Path) -> None:
    make_configmap(tmp_path, "10_00_00.1", {"config.yaml": domain_yaml("a")})
    with pytest.raises(RuleSetError, match="duplicate domain 'a'"):
        load_rules(str(tmp_path), include_dotfiles=True)


def test_file_errors_name_the_path_on_disk(tmp_path: Path) -> None:
    bad = write(
        tmp_path / "sub" / "bad.yaml",
        "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: eon, requests_per_unit: 1}\n",
    )
    with pytest.raises(RuleSetError) as caught:
        load_rules(str(tmp_path))
    assert (
        str(caught.value)
        == f"{bad}:4: descriptors[0].rate_limit.unit: invalid rate limit unit 'eon'; {UNITS}"
    )


def test_a_single_file_path_is_loaded(tmp_path: Path) -> None:
    one = write(tmp_path / "rules.conf", domain_yaml("solo"))
    assert set(load_rules(str(one)).domains) == {"solo"}


def test_missing_path_and_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(RuleSetError) as caught:
        load_rules(str(tmp_path / "nope"))
    assert str(caught.value) == (
        f"{tmp_path / 'nope'}: rules path does not exist; "
        "expected a directory of *.yaml files or one file"
    )
    (tmp_path / "latin1.yaml").write_bytes(b"domain: caf\xe9\n")
    with pytest.raises(
        RuleSetError, match=r"latin1\.yaml: cannot read file: .*expected a readable UTF-8"
    ):
        load_rules(str(tmp_path))


def _build(text: str) -> RuleSet:
    return build_rules([RuleFile("t.yaml", text)])


def _raises(text: str) -> RuleSetError:
    with pytest.raises(RuleSetError) as caught:
        _build(text)
    return caught.value


def test_plans_files_beside_the_rules_are_left_to_the_plans_loader(tmp_path: Path) -> None:
    (tmp_path / "api.yaml").write_text("domain: api\ndescriptors:\n  - key: user\n"
                                       "    rate_limit: {unit: second, requests_per_unit: 1}\n")
    (tmp_path / "plans.yaml").write_text("# full mode's plans\nplans:\n  free: {}\n")
    rules = load_rules(str(tmp_path))
    assert list(rules.domains) == ["api"] and rules.files == (str(tmp_path / "api.yaml"),)
    from sidecar.rules.loader import read_rule_files

    assert [f.name for f in read_rule_files(str(tmp_path), plans=True)] == [
        str(tmp_path / "plans.yaml")]
