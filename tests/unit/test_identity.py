"""The identity resolver, scenario by scenario: what a product person would check by hand."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, MutableMapping
from datetime import UTC, datetime
from typing import Any

import pytest

from processors.identity import IdentityResolver, Resolution, commands_for, is_illegal_id, person_id_for
from schemas.events import RawEvent
from schemas.identity import IdentityCommand

T0 = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
_message_ids = itertools.count()


def command(kind: str, **fields: Any) -> IdentityCommand:
    fields.setdefault("message_id", f"m{next(_message_ids)}")
    return IdentityCommand(kind=kind, timestamp=T0, **fields)


def seen(distinct_id: str, *, user: bool = False, **fields: Any) -> IdentityCommand:
    return command("seen", distinct_id=distinct_id, user_id=distinct_id if user else None, **fields)


def identify(anonymous_id: str, user_id: str, **fields: Any) -> IdentityCommand:
    return command("identify", anonymous_id=anonymous_id, user_id=user_id, **fields)


def alias(previous_id: str, user_id: str) -> IdentityCommand:
    return command("alias", previous_id=previous_id, user_id=user_id)


def versions(result: Resolution) -> list[int]:
    return [record.version for records in (result.mappings, result.merges, result.persons) for record in records]


def without_dedup_ring(store: dict[str, Any]) -> dict[str, Any]:
    """The identity facts alone: without the ring of recent message ids and the last command's journal."""
    ring = ("message:", "recent:", "counter:message", "journal")
    return {key: value for key, value in store.items() if not key.startswith(ring)}


@pytest.fixture
def store() -> dict[str, Any]:
    return {}


@pytest.fixture
def resolver(store) -> IdentityResolver:
    return IdentityResolver(store)


def test_anonymous_browsing_then_sign_up(resolver):
    first = resolver.apply(seen("anon-1"))
    person = person_id_for("anon-1")
    assert [(m.distinct_id, m.person_id) for m in first.mappings] == [("anon-1", person)]
    assert [(p.person_id, p.visitor_number, p.identified, p.is_contact) for p in first.persons] == [(person, 1, False, False)]

    signed_up = resolver.apply(identify("anon-1", "user-1", email="ada@example.com", contact_traits=["email"]))

    assert [(m.distinct_id, m.person_id) for m in signed_up.mappings] == [("user-1", person)]
    assert signed_up.merges == [] and signed_up.warnings == []
    assert [(p.person_id, p.identified, p.is_contact) for p in signed_up.persons] == [(person, True, True)]
    assert resolver.resolve("anon-1") == resolver.resolve("user-1") == person


def test_identify_of_two_unknown_ids_founds_the_person_on_the_anonymous_id(resolver):
    result = resolver.apply(identify("anon-1", "user-1"))

    assert {m.distinct_id: m.person_id for m in result.mappings} == {
        "anon-1": person_id_for("anon-1"),
        "user-1": person_id_for("anon-1"),
    }
    assert resolver.person(person_id_for("anon-1")).identified


def test_login_on_a_second_device_merges_its_visitor_into_the_user(resolver):
    resolver.apply(identify("laptop", "user-1"))
    resolver.apply(seen("phone"))

    result = resolver.apply(identify("phone", "user-1"))

    user_person, phone_person = person_id_for("laptop"), person_id_for("phone")
    assert [(m.from_person, m.into_person, m.reason) for m in result.merges] == [(phone_person, user_person, "identify")]
    assert [(m.distinct_id, m.person_id) for m in result.mappings] == [("phone", user_person)]
    assert {p.person_id: p.merged_into for p in result.persons} == {user_person: None, phone_person: user_person}
    assert resolver.resolve("phone") == resolver.resolve("laptop") == user_person


def test_another_user_logging_in_on_the_same_device_is_refused(resolver, store):
    resolver.apply(identify("shared-device", "alice"))
    resolver.apply(identify("bobs-phone", "bob"))
    before = without_dedup_ring(store)

    result = resolver.apply(identify("shared-device", "bob", email="bob@example.com"))

    assert (result.mappings, result.merges, result.persons) == ([], [], [])
    assert [w.field for w in result.warnings] == ["user_id"]
    assert "never fuses two accounts" in result.warnings[0].reason
    assert without_dedup_ring(store) == before
    assert resolver.resolve("shared-device") == resolver.resolve("alice") != resolver.resolve("bob")


def test_a_new_user_logging_in_on_a_shared_device_starts_their_own_person(resolver):
    resolver.apply(identify("shared-device", "alice"))

    result = resolver.apply(identify("shared-device", "carol"))

    assert result.merges == []
    assert "never fuses two accounts" in result.warnings[0].reason
    assert resolver.resolve("carol") == person_id_for("carol") != resolver.resolve("alice")
    assert resolver.resolve("shared-device") == resolver.resolve("alice")
    assert resolver.person(person_id_for("carol")).identified


def test_a_visitor_known_only_by_email_merges_into_the_account_they_log_in_to(resolver):
    resolver.apply(seen("visitor", email="eve@example.com", contact_traits=["email"]))
    resolver.apply(seen("eve", user=True))

    result = resolver.apply(identify("visitor", "eve"))

    assert [(m.from_person, m.into_person) for m in result.merges] == [(person_id_for("visitor"), person_id_for("eve"))]
    assert resolver.resolve("visitor") == resolver.resolve("eve")
    assert resolver.person(person_id_for("eve")).is_contact


def test_alias_merges_two_identified_users(resolver):
    resolver.apply(seen("old-account", user=True))
    resolver.apply(seen("new-account", user=True))

    result = resolver.apply(alias("old-account", "new-account"))

    old, new = person_id_for("old-account"), person_id_for("new-account")
    assert [(m.from_person, m.into_person, m.reason) for m in result.merges] == [(old, new, "alias")]
    assert result.warnings == []
    assert resolver.resolve("old-account") == new
    assert resolver.person(old).merged_into == new


def test_alias_chain_and_cycle_end_as_one_person(resolver):
    for user in ("a", "b", "c"):
        resolver.apply(seen(user, user=True))

    resolver.apply(alias("a", "b"))
    resolver.apply(alias("b", "c"))
    closing_the_cycle = resolver.apply(alias("c", "a"))

    assert closing_the_cycle == Resolution()
    assert {resolver.resolve(user) for user in ("a", "b", "c")} == {person_id_for("c")}


def test_alias_of_ids_already_in_one_person_is_a_no_op(resolver, store):
    resolver.apply(identify("anon", "user"))
    before = without_dedup_ring(store)

    assert resolver.apply(alias("anon", "user")) == Resolution()
    assert resolver.apply(alias("user", "anon")) == Resolution()
    assert without_dedup_ring(store) == before


def test_resolve_follows_chained_merges_to_the_live_person(resolver):
    resolver.apply(seen("x"))
    resolver.apply(seen("y"))
    resolver.apply(seen("z", user=True))
    resolver.apply(alias("x", "y"))

    result = resolver.apply(alias("y", "z"))

    root = person_id_for("z")
    assert {m.distinct_id for m in result.mappings} == {"x", "y"}  # x moved into y earlier: it moves again
    assert resolver.resolve("x") == resolver.resolve("y") == root
    assert resolver.person(person_id_for("x")).merged_into == person_id_for("y")
    assert resolver.person(root).merged_into is None


def test_the_store_layout_is_one_small_value_per_key(resolver, store):
    resolver.apply(identify("laptop", "user"))
    resolver.apply(identify("phone", "user"))  # an unknown id joins the person
    resolver.apply(seen("tablet"))
    merge = resolver.apply(identify("tablet", "user"))

    live, absorbed = person_id_for("laptop"), person_id_for("tablet")
    assert {key: store[key] for key in store if key.startswith("distinct_id:")} == {
        f"distinct_id:{d}": live for d in ("laptop", "user", "phone", "tablet")
    }
    assert store[f"person:{live}"] == {
        "visitor_number": 1,
        "identified": True,
        "has_user_id": True,
        "is_contact": True,
        "version": merge.persons[0].version,
        "merged_into": None,
        "distinct_ids": ["laptop", "user", "phone", "tablet"],
    }
    assert store[f"person:{absorbed}"]["distinct_ids"] == [] and store[f"person:{absorbed}"]["merged_into"] == live
    assert (store["counter:visitor"], store["counter:message"]) == (2, 4)
    assert store["counter:version"] == max(p.version for p in merge.persons)


@pytest.mark.parametrize(
    "value",
    ["", "   ", "null", " NULL ", "Undefined", '"undefined"', "''", '""', "[object Object]", "NaN", "None", "0",
     "-1", "guest", "anonymous", "email", "id", "distinct_id", "distinctId", "user_id", "userId", "not_authenticated",
     "true", "False", None],
)  # fmt: skip
def test_placeholder_ids_are_illegal(value):
    assert is_illegal_id(value)


@pytest.mark.parametrize("value", ["anon-7f3a", "42", "0x0", "nullable", "guest-42", "ada@example.com", "'ada'"])
def test_real_ids_are_legal(value):
    assert not is_illegal_id(value)


@pytest.mark.parametrize("placeholder", ["null", " Undefined ", '"guest"', ""])
def test_illegal_ids_never_create_persons_or_merges(resolver, store, placeholder):
    resolver.apply(identify("anon", "user"))
    resolver.apply(seen("other", user=True))

    results = [
        resolver.apply(seen(placeholder)),
        resolver.apply(identify(placeholder, "user")),
        resolver.apply(identify("anon", placeholder)),
        resolver.apply(alias(placeholder, "other")),
        resolver.apply(alias("other", placeholder)),
    ]

    for result in results:
        assert (result.mappings, result.merges, result.persons) == ([], [], [])
        assert len(result.warnings) == 1 and "placeholder" in result.warnings[0].reason
    assert resolver.resolve(placeholder) is None
    assert resolver.person(person_id_for(placeholder)) is None
    assert resolver.resolve("anon") != resolver.resolve("other")


def test_a_link_naming_a_placeholder_still_registers_the_usable_id(resolver):
    result = resolver.apply(identify("null", "user-9"))

    assert [w.field for w in result.warnings] == ["anonymous_id"]
    assert [m.distinct_id for m in result.mappings] == ["user-9"]
    assert resolver.person(resolver.resolve("user-9")).identified


def test_missing_ids_are_refused_with_a_warning(resolver):
    result = resolver.apply(command("identify", user_id="user-1"))

    assert [(w.field, w.reason) for w in result.warnings] == [("anonymous_id", "missing")]
    assert resolver.resolve("user-1") == person_id_for("user-1")


def test_contact_and_identified_flags_are_exact(resolver):
    resolver.apply(seen("just-browsing"))
    resolver.apply(seen("push-subscriber", contact_traits=["push_token"]))
    resolver.apply(seen("newsletter", email="n@example.com", contact_traits=["email"]))
    resolver.apply(seen("customer", user=True))

    flags = {
        d: (resolver.person(resolver.resolve(d)).identified, resolver.person(resolver.resolve(d)).is_contact)
        for d in ("just-browsing", "push-subscriber", "newsletter", "customer")
    }
    assert flags == {
        "just-browsing": (False, False),
        "push-subscriber": (False, True),
        "newsletter": (True, True),
        "customer": (True, True),
    }


def test_a_merge_keeps_every_flag_of_both_persons(resolver):
    resolver.apply(seen("push-subscriber", contact_traits=["push_token"]))
    resolver.apply(seen("customer", user=True))

    result = resolver.apply(identify("push-subscriber", "customer"))

    flags = {p.person_id: (p.identified, p.is_contact, p.merged_into) for p in result.persons}
    into, absorbed = person_id_for("customer"), person_id_for("push-subscriber")
    assert flags == {into: (True, True, None), absorbed: (False, True, into)}


def test_visitor_numbers_are_unique_and_never_reused(resolver):
    for distinct_id in ("a", "b", "c"):
        resolver.apply(seen(distinct_id))
    resolver.apply(identify("b", "a-user"))
    resolver.apply(identify("a", "a-user"))  # a's person (visitor 1) is absorbed into b's (visitor 2)

    resolver.apply(seen("d"))

    numbers = {d: resolver.person(person_id_for(d)).visitor_number for d in ("a", "b", "c", "d")}
    assert numbers == {"a": 1, "b": 2, "c": 3, "d": 4}
    assert resolver.person(person_id_for("a")).merged_into == person_id_for("b")


def test_versions_strictly_increase_across_all_outputs(resolver):
    commands = [seen("a"), seen("b"), identify("a", "u"), identify("b", "u"), alias("u", "v"), seen("c", user=True)]
    results = [resolver.apply(c) for c in commands]

    issued = [sorted(versions(r)) for r in results]
    flat = [v for vs in issued for v in vs]
    assert flat == sorted(set(flat)), "versions are unique and later commands get higher ones"
    latest = {p.person_id: p for r in results for p in r.persons}
    assert all(resolver.person(pid) == person for pid, person in latest.items())


def test_a_duplicate_command_changes_nothing_and_resends_the_mappings_it_led_to(resolver, store):
    """A worker killed after the state reached the changelog but before the outputs left is redelivered the
    command: the mappings it led to (all ids of the persons it names, as they stand) are sent again."""
    merge = identify("phone", "user")
    sent = [resolver.apply(identify("laptop", "user")), resolver.apply(seen("phone")), resolver.apply(merge)]
    last_sent = {m.distinct_id: m for resolution in sent for m in resolution.mappings}
    before = dict(store)

    again = resolver.apply(merge)

    assert store == before and again.merges == [] and again.warnings == []
    assert {m.distinct_id: m for m in again.mappings} == last_sent  # phone, laptop and user: the same records
    assert {m.person_id for m in again.mappings} == {resolver.resolve("user")}
    assert [p.person_id for p in again.persons] == [resolver.resolve("user")]


def test_a_duplicate_refusal_is_not_warned_twice(resolver):
    refused = seen("undefined")
    assert resolver.apply(refused).warnings
    assert resolver.apply(refused) == Resolution()


def test_a_duplicate_older_than_the_dedup_window_is_still_harmless(store):
    resolver = IdentityResolver(store, recent_messages=2)
    merge = identify("phone", "user")
    resolver.apply(identify("laptop", "user"))
    resolver.apply(seen("phone"))
    resolver.apply(merge)
    resolver.apply(seen("x"))
    resolver.apply(seen("y"))  # merge's message id has left the window

    again = resolver.apply(merge)

    assert (again.mappings, again.merges, again.persons) == ([], [], [])
    assert sum(key.startswith("message:") for key in store) == 2


class JsonStore(MutableMapping[str, Any]):
    """A store that keeps values as JSON text, as a persisted faust table does: in-place edits are lost."""

    def __init__(self) -> None:
        self._data: dict[str, str] = {}

    def __getitem__(self, key: str) -> Any:
        return json.loads(self._data[key])

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = json.dumps(value)

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def test_works_on_a_store_that_only_keeps_json(store):
    commands = [seen("a"), identify("a", "u"), seen("b"), identify("b", "u"), alias("u", "w"), identify("b", "u")]

    on_dict, on_json = IdentityResolver(store), IdentityResolver(JsonStore())

    assert [on_json.apply(c) for c in commands] == [on_dict.apply(c) for c in commands]
    assert json.loads(json.dumps(store)) == store


def raw_event(type_: str = "track", **fields: Any) -> RawEvent:
    fields.setdefault("message_id", "evt-1")
    return RawEvent(type=type_, timestamp=T0, received_at=T0, source_id="web", **fields)


def kinds(commands: list[IdentityCommand]) -> list[tuple[str, str | None, str | None]]:
    return [(c.kind, c.distinct_id or c.anonymous_id or c.previous_id, c.user_id) for c in commands]


@pytest.mark.parametrize(
    ("event", "first_sighting", "expected"),
    [
        (raw_event(anonymous_id="a"), True, [("seen", "a", None)]),
        (raw_event(anonymous_id="a"), False, []),
        (raw_event(user_id="u"), True, [("seen", "u", "u")]),
        (raw_event(anonymous_id="a", user_id="u"), False, [("identify", "a", "u")]),
        (raw_event("identify", anonymous_id="a", user_id="u"), True, [("identify", "a", "u")]),
        (raw_event("identify", anonymous_id="a"), False, [("seen", "a", None)]),
        (raw_event("alias", previous_id="p", user_id="u"), False, [("alias", "p", "u")]),
        (raw_event("alias", anonymous_id="a", previous_id="p", user_id="u"), True,
         [("alias", "p", "u"), ("seen", "a", None)]),
    ],
)  # fmt: skip
def test_commands_for_each_kind_of_event(event, first_sighting, expected):
    commands = commands_for(event, first_sighting)

    assert kinds(commands) == expected
    assert len({c.message_id for c in commands}) == len(commands)
    assert all(c.message_id.startswith("evt-1:") and c.timestamp == T0 for c in commands)


def test_commands_for_takes_contact_traits_and_skips_placeholders():
    event = raw_event(
        "identify",
        anonymous_id="a",
        user_id="u",
        traits={"email": "ada@example.com", "phone": "+49 30 1234", "pushToken": "t", "telegram": "@ada", "age": 3},
    )
    placeholder_traits = {"email": "undefined", "phone": "", "push_token": None}
    placeholders = raw_event("identify", anonymous_id="a", traits=placeholder_traits)

    [linked] = commands_for(event, first_sighting=False)
    [learned] = commands_for(placeholders, first_sighting=False)

    assert (linked.email, linked.contact_traits) == ("ada@example.com", ["email", "phone", "push_token", "chat"])
    assert (learned.email, learned.contact_traits) == (None, [])


def test_a_redelivered_event_changes_nothing_end_to_end(resolver, store):
    traits = {"email": "u@example.com"}
    sign_up = raw_event("identify", message_id="evt-2", anonymous_id="a", user_id="u", traits=traits)
    for command_ in commands_for(raw_event(anonymous_id="a"), first_sighting=True):
        resolver.apply(command_)
    first = [resolver.apply(c) for c in commands_for(sign_up, first_sighting=False)]
    before = dict(store)

    again = [resolver.apply(c) for c in commands_for(sign_up, first_sighting=False)]

    assert first[0].persons[0].identified and first[0].persons[0].is_contact
    assert store == before
    assert all(r.merges == [] and r.warnings == [] for r in again)
    assert {m.distinct_id for r in again for m in r.mappings} == {"a", "u"}
