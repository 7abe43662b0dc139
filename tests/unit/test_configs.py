"""Config definitions, bucketing and the evaluator (pure): vectors, distribution, monotonic rollouts, every reason."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.configs import ConfigRegistry, ConfigSpec, ConfigVersion, Override, Subject, bucket, in_rollout, serve
from tests.unit.test_conditions import any_tree, dated_people
from tests.vectors.make_config_bucketing import PATH, vectors

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def version_of(spec: dict, version: int = 1) -> ConfigVersion:
    return ConfigVersion(spec=ConfigSpec.model_validate(spec), version=version, change="updated", changed_at=NOW)


def independent_bucket(key: str, salt: str, id_: str) -> float:
    """The documented formula written a second way (hex digits, integer division): what a client library does."""
    top = int(hashlib.sha256((key + ":" + salt + ":" + id_).encode("utf-8")).hexdigest()[:16], 16)
    return (top // 2**11) / 2**53


def test_shipped_vectors_are_what_the_code_computes():
    shipped = json.loads(PATH.read_text())
    assert shipped == json.loads(json.dumps(vectors(), ensure_ascii=False))
    assert len(shipped["bucket"]) >= 40
    for case in shipped["bucket"]:
        assert bucket(case["config_key"], case["salt"], case["bucketing_id"]) == case["bucket"]
        assert independent_bucket(case["config_key"], case["salt"], case["bucketing_id"]) == case["bucket"]
    reasons = {case["served"]["reason"] for case in shipped["serve"]["cases"]}
    assert reasons == {"rule_match", "rollout_excluded"}


def test_rollout_distribution_over_100000_ids_is_within_statistical_bounds():
    n, percent = 100_000, 20
    inside = sum(in_rollout("new-checkout", "", f"user-{i}", percent) for i in range(n))
    sigma = math.sqrt(n * 0.2 * 0.8)  # ~126
    assert abs(inside - n * 0.2) < 5 * sigma


def test_variant_split_over_100000_ids_follows_the_weights():
    config = version_of({"key": "color", "type": "string", "variants": [
        {"key": "a", "weight": 50}, {"key": "b", "weight": 30}, {"key": "c", "weight": 20}], "rules": [{}], "default": "a"})  # fmt: skip
    n = 100_000
    counts = Counter(serve(config, Subject(anonymous_id=f"d{i}"), NOW).variant for i in range(n))
    chi2 = sum((counts[k] - n * w) ** 2 / (n * w) for k, w in (("a", 0.5), ("b", 0.3), ("c", 0.2)))
    assert chi2 < 13.8  # p = 0.001 for 2 degrees of freedom


@given(id_=st.text(max_size=30), low=st.floats(0, 100), high=st.floats(0, 100))
def test_raising_a_rollout_keeps_everyone_already_in(id_, low, high):
    low, high = sorted((low, high))
    if in_rollout("k", "s", id_, low):
        assert in_rollout("k", "s", id_, high)


@given(id_=st.text(max_size=40), key=st.text(max_size=10), salt=st.text(max_size=5))
def test_bucket_is_in_unit_interval_and_matches_the_documented_formula(id_, key, salt):
    value = bucket(key, salt, id_)
    assert 0 <= value < 1
    assert value == independent_bucket(key, salt, id_)


SPLIT = {
    "key": "exp",
    "type": "string",
    "variants": [{"key": "a", "weight": 1}, {"key": "b", "weight": 1}],
    "rules": [{"rollout_percent": 100}],
    "default": "a",
}


@given(device=st.text(min_size=1, max_size=20), user=st.text(min_size=1, max_size=20), plan=st.sampled_from(["pro", "free"]))
def test_a_visitor_keeps_their_variant_when_they_log_in(device, user, plan):
    config = version_of(SPLIT)
    before = serve(config, Subject(anonymous_id=device), NOW)
    after = serve(config, Subject(anonymous_id=device, user_id=user, person_id="p", properties={"plan": plan}), NOW)
    assert before.variant == after.variant


def test_every_reason():
    spec = {
        "key": "banner",
        "type": "json",
        "variants": [
            {"key": "off", "value": None},
            {"key": "small", "value": {"size": 1}, "weight": 1},
            {"key": "big", "value": {"size": 3}},
        ],
        "rules": [
            {"condition": {"kind": "property", "property": "plan", "operator": "equals", "value": "enterprise"}, "variant": "big"},
            {"condition": {"kind": "property", "property": "beta", "operator": "equals", "value": True}, "rollout_percent": 0},
            {"condition": {"kind": "property", "property": "country", "operator": "in", "value": ["FR", "DE"]}, "rollout_percent": 100},
        ],
        "default": "off",
        "overrides": [
            {"ref": "vip", "variant": "big"},
            {"ref": "tester", "variant": "small", "expires_at": (NOW - timedelta(hours=1)).isoformat()},
        ],
    }
    config = version_of(spec, version=7)
    enterprise = serve(config, Subject(user_id="u1", properties={"plan": "enterprise"}), NOW)
    assert (enterprise.variant, enterprise.value, enterprise.reason, enterprise.rule, enterprise.version) == (
        "big",
        {"size": 3},
        "rule_match",
        0,
        7,
    )
    assert serve(config, Subject(user_id="u2", properties={"country": "fr"}), NOW).answer() == {
        "variant": "small", "value": {"size": 1}, "version": 7, "reason": "rule_match", "rule": 2}  # fmt: skip
    excluded = serve(config, Subject(user_id="u3", properties={"beta": True}), NOW)
    assert (excluded.variant, excluded.reason, excluded.rule) == ("off", "rollout_excluded", 1)
    # excluded by rule 1's rollout, caught by rule 2
    assert serve(config, Subject(user_id="u4", properties={"beta": True, "country": "DE"}), NOW).reason == "rule_match"
    assert serve(config, Subject(user_id="u5"), NOW).reason == "default"
    override = serve(config, Subject(anonymous_id="d", user_id="vip"), NOW)
    assert (override.variant, override.reason) == ("big", "override")
    # the expired override no longer applies; an unexpired one would have (one hour earlier)
    assert serve(config, Subject(user_id="tester"), NOW).reason == "default"
    assert serve(config, Subject(user_id="tester"), NOW - timedelta(hours=2)).reason == "override"
    disabled = version_of({**spec, "enabled": False}, version=8)
    assert serve(disabled, Subject(user_id="vip", properties={"plan": "enterprise"}), NOW).answer() == {
        "variant": "off", "value": None, "version": 8, "reason": "disabled", "rule": None}  # fmt: skip


def test_an_override_matches_a_person_id_too():
    config = version_of({**SPLIT, "overrides": [{"ref": "person-9", "variant": "b"}]})
    assert serve(config, Subject(anonymous_id="x", person_id="person-9"), NOW).reason == "override"


def test_boolean_configs_serve_true_to_their_rollout():
    config = version_of({"key": "flag", "rules": [{"rollout_percent": 50}]})
    served = Counter((s.value, s.reason) for s in (serve(config, Subject(anonymous_id=str(i)), NOW) for i in range(2000)))
    assert set(served) == {(True, "rule_match"), (False, "rollout_excluded")}
    assert 900 < served[(True, "rule_match")] < 1100


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"key": "x", "type": "string", "variants": [{"key": "a"}], "default": "b"}, "'b' is not one of the variants"),
        ({"key": "x", "type": "string", "variants": [{"key": "a"}, {"key": "a"}], "default": "a"}, "unique"),
        ({"key": "x", "type": "string", "variants": [{"key": "a"}], "rules": [{}], "default": "a"}, "every weight is 0"),
        ({"key": "x", "type": "string", "variants": [{"key": "a", "value": 3}], "default": "a"}, "values are strings"),
        ({"key": "x", "variants": [{"key": "on"}]}, "exactly the variants 'true'"),
        ({"key": "x", "rules": [{"variant": "maybe"}]}, "'maybe' is not one of the variants"),
        ({"key": "x", "overrides": [{"ref": "u", "variant": "maybe"}]}, "'maybe' is not one of the variants"),
        ({"key": "bad key!"}, "key"),
        ({"key": "x", "rules": [{"rollout_percent": 101}]}, "rollout_percent"),
    ],
)
def test_invalid_definitions_name_the_field_and_rule(spec, message):
    with pytest.raises(ValidationError) as error:
        ConfigSpec.model_validate(spec)
    assert message in str(error.value)


def test_override_set_and_removed():
    spec = ConfigSpec.model_validate(SPLIT)
    updated = spec.with_override(Override(ref="u", variant="b")).with_override(Override(ref="u", variant="a"))
    assert [(o.ref, o.variant) for o in updated.overrides] == [("u", "a")]
    assert updated.without_override("u").overrides == []


@given(order=st.permutations([1, 2, 3, 3, 2]))
def test_registry_keeps_the_highest_version_whatever_the_order(order):
    registry = ConfigRegistry()
    for n in order:
        registry.apply(version_of({**SPLIT, "description": f"v{n}"}, version=n))
    assert registry.latest["exp"].version == 3 and registry.latest["exp"].spec.description == "v3"
    assert [v.version for v in registry.versions("exp")] == [1, 2, 3]
    assert registry.next_version("exp") == 4


# -- the compiled evaluator equals the reference one --------------------------------------------------------

refs = st.sampled_from(["u1", "u2", "d1", "p1"])


@st.composite
def configs(draw):
    keys = draw(st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=4, unique=True))
    weights = draw(st.lists(st.integers(0, 5), min_size=len(keys), max_size=len(keys)))
    if not any(weights):
        weights[0] = 1
    rules = draw(st.lists(st.fixed_dictionaries({
        "condition": st.none() | any_tree.map(lambda c: c.model_dump()),
        "rollout_percent": st.sampled_from([0, 10, 33.3, 50, 100]),
        "variant": st.none() | st.sampled_from(keys),
    }), max_size=4))  # fmt: skip
    overrides = draw(st.lists(st.fixed_dictionaries({
        "ref": refs, "variant": st.sampled_from(keys),
        "expires_at": st.none() | st.sampled_from([(NOW - timedelta(days=1)).isoformat(), (NOW + timedelta(days=1)).isoformat()]),
    }), max_size=3, unique_by=lambda o: o["ref"]))  # fmt: skip
    spec = {"key": draw(st.sampled_from(["k", "new-checkout"])), "type": "string", "salt": draw(st.sampled_from(["", "s"])),
            "variants": [{"key": k, "weight": w} for k, w in zip(keys, weights, strict=True)], "rules": rules,
            "default": draw(st.sampled_from(keys)), "enabled": draw(st.booleans()), "overrides": overrides}  # fmt: skip
    return version_of(spec, version=draw(st.integers(1, 9)))


subjects = st.builds(
    Subject,
    anonymous_id=st.none() | st.sampled_from(["d1", "d2", "émilie"]),
    user_id=st.none() | st.sampled_from(["u1", "u2"]),
    person_id=st.none() | st.just("p1"),
    properties=dated_people,
)


@given(config=configs(), subject=subjects)
def test_the_compiled_evaluator_serves_as_the_reference(config, subject):
    from schemas.configs import serve_reference

    assert serve(config, subject, NOW) == serve_reference(config, subject, NOW)
