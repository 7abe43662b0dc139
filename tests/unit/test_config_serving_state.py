"""The collector's config state and exposure window (pure parts of ingest/configs.py), and the projector's
person-properties record."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson
from hypothesis import given
from hypothesis import strategies as st

from ingest.configs import ConfigState, ExposureWindow
from projections.profiles import PERSONS, person_properties_record
from schemas.configs import ConfigSpec, ConfigVersion, Served
from schemas.identity import DistinctIdMapping
from schemas.person_properties import PersonProperties
from schemas.person_segments import PersonSegments
from schemas.topics import Topics

TOPICS = Topics(prefix="t")


def served(key="k", variant="a", version=1) -> Served:
    return Served(key, variant, variant, version, "rule_match", 0)


def test_a_repeat_within_the_window_is_not_new():
    window = ExposureWindow(window_s=60)
    assert window.new("p", [served(), served("j")]) == [served(), served("j")]
    assert window.new("p", [served(), served("j")]) == []
    assert window.new("p", [served(variant="b")]) == [served(variant="b")]  # another variant
    assert window.new("p", [served(version=2)]) == [served(version=2)]  # another version
    assert window.new("q", [served()]) == [served()]  # another person
    window.forget("q", [served()])
    assert window.new("q", [served()]) == [served()]  # a failed write is recorded again


def test_a_repeat_after_the_window_is_new_again():
    window = ExposureWindow(window_s=0.2)
    assert window.new("p", [served()])
    time.sleep(0.25)
    assert window.new("p", [served()]) == [served()]


@given(st.lists(st.tuples(st.sampled_from("pq"), st.sampled_from("kj"), st.sampled_from("ab"), st.integers(1, 2)), max_size=30))
def test_each_exposure_is_new_exactly_once_within_a_window(asks):
    window = ExposureWindow(window_s=3600)
    recorded = [(person, item.key, item.variant, item.version) for person, key, variant, version in asks
                for item in window.new(person, [served(key, variant, version)])]  # fmt: skip
    assert sorted(recorded) == sorted(set(asks))


def _record(spec: dict, version: int, deleted: bool = False) -> bytes:
    record = ConfigVersion(
        spec=ConfigSpec.model_validate(spec), version=version, change="updated", changed_at=datetime.now(UTC), deleted=deleted
    )
    return record.model_dump_json().encode()


def test_state_follows_the_topics_whatever_the_order():
    state = ConfigState(TOPICS)
    state.on_record(TOPICS.configs.name, b"f", _record({"key": "f"}, 2))
    state.on_record(TOPICS.configs.name, b"f", _record({"key": "f", "enabled": False}, 1))  # late, older: ignored
    assert [(c.key, c.version, c.spec.enabled) for c in state.live] == [("f", 2, True)]
    mapping = DistinctIdMapping(distinct_id="ann", person_id="p1", version=3)
    state.on_record(TOPICS.identities.name, b"ann", mapping.model_dump_json().encode())
    older = DistinctIdMapping(distinct_id="ann", person_id="p0", version=2)
    state.on_record(TOPICS.identities.name, b"ann", older.model_dump_json().encode())
    state.on_record(
        TOPICS.person_properties.name,
        b"p1",
        PersonProperties(person_id="p1", version=5, properties={"plan": "pro", "seats": 3}).model_dump_json().encode(),
    )
    subject = state.subject("dev", "ann", {"seats": 9})
    # sent properties win; a userId makes the subject identified (and so a contact) before its profile says so
    assert (subject.person_id, subject.properties) == ("p1", {"plan": "pro", "seats": 9, "$is_identified": True, "$is_contact": True})
    assert state.subject("dev", None, {}).person_id is None
    state.on_record(TOPICS.person_properties.name, b"p1", None)  # a tombstone: the person was deleted
    assert state.subject("dev", "ann", {}).properties == {"$is_identified": True, "$is_contact": True}
    assert state.subject("ann", None, {}).properties == {}
    state.on_record(TOPICS.configs.name, b"f", _record({"key": "f"}, 3, deleted=True))
    assert state.live == ()


def test_the_projector_publishes_properties_with_the_derived_facts():
    columns = dict.fromkeys(PERSONS.column_names, "")
    columns.update(person_id="p1", properties=orjson.dumps({"plan": "pro"}).decode(), is_identified=True, email_domain="example.com",
                   version=7, is_deleted=0, visitor_number=4)  # fmt: skip
    key, value = person_properties_record([columns[name] for name in PERSONS.column_names])
    record = PersonProperties.model_validate_json(value)
    assert key == "p1" and record.version == 7
    assert (
        record.properties["plan"] == "pro"
        and record.properties["$is_identified"] is True
        and record.properties["$email_domain"] == "example.com"
    )
    columns["is_deleted"] = 1
    assert person_properties_record([columns[name] for name in PERSONS.column_names]) == ("p1", None)


def _segments(person_id: str, version: int, *segments: str) -> bytes:
    return PersonSegments(person_id=person_id, version=version, segments=list(segments)).model_dump_json().encode()


def test_state_follows_person_segments_highest_version_first_and_tombstones():
    state = ConfigState(TOPICS)
    state.on_record(
        TOPICS.identities.name, b"dev", DistinctIdMapping(distinct_id="dev", person_id="p1", version=1).model_dump_json().encode()
    )
    state.on_record(
        TOPICS.person_properties.name,
        b"p1",
        PersonProperties(person_id="p1", version=1, properties={"$tags": ["vip"]}).model_dump_json().encode(),
    )
    assert state.subject("dev", None, {}).properties == {"$tags": ["vip"]}  # in no segment: nothing added
    state.on_record(TOPICS.person_segments.name, b"p1", _segments("p1", 3, "buyers", "vips"))
    state.on_record(TOPICS.person_segments.name, b"p1", _segments("p1", 1, "buyers"))  # older: ignored
    assert state.subject("dev", None, {}).properties == {"$tags": ["vip"], "$segments": ["buyers", "vips"]}
    state.on_record(TOPICS.person_segments.name, b"p1", _segments("p1", 4, "vips"))
    assert state.subject("dev", None, {}).properties["$segments"] == ["vips"]
    state.on_record(TOPICS.person_segments.name, b"p1", None)  # in no segment any more
    assert "$segments" not in state.subject("dev", None, {}).properties


def test_the_projector_publishes_tags_lists_stage_and_status():
    columns = dict.fromkeys(PERSONS.column_names, "")
    columns.update(person_id="p1", properties="{}", tags=("vip", "beta"), lists=["l1"], stage="lead", status="disabled",
                   is_contact=True, version=2, is_deleted=0, visitor_number=1)  # fmt: skip
    _, value = person_properties_record([columns[name] for name in PERSONS.column_names])
    facts = PersonProperties.model_validate_json(value).properties
    assert (facts["$tags"], facts["$lists"], facts["$stage"], facts["$status"], facts["$is_contact"]) == (
        ["vip", "beta"], ["l1"], "lead", "disabled", True,
    )  # fmt: skip
