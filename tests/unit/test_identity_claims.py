"""The identity sequencer's management API commands: claim (an API-created user that tracking later joins)
and forget (a deleted person whose ids start a fresh person)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.identity import IdentityResolver, email_claim_keys, person_id_for
from schemas.identity import IdentityCommand

T0 = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
_ids = itertools.count()
API_PERSON = "00000000-0000-5000-8000-00000000a11c"


def command(kind: str, **fields: Any) -> IdentityCommand:
    fields.setdefault("message_id", f"c{next(_ids)}")
    return IdentityCommand(kind=kind, timestamp=T0, **fields)


def claim(distinct_id: str, person_id: str | None = API_PERSON, **fields: Any) -> IdentityCommand:
    return command("claim", distinct_id=distinct_id, person_id=person_id, **fields)


def test_a_claim_founds_the_person_the_api_chose_and_tracking_with_its_user_id_joins_it():
    resolver = IdentityResolver({})
    out = resolver.apply(claim("u1", user_id="u1", email="Ada@Example.com"))
    assert [(m.distinct_id, m.person_id) for m in out.mappings] == [("u1", API_PERSON)]
    assert out.persons[0].identified and out.persons[0].is_contact
    resolver.apply(command("seen", distinct_id="anon-1"))
    merged = resolver.apply(command("identify", anonymous_id="anon-1", user_id="u1"))
    assert [(m.from_person, m.into_person) for m in merged.merges] == [(person_id_for("anon-1"), API_PERSON)]
    assert resolver.resolve("anon-1") == API_PERSON


def test_tracking_that_identifies_a_new_user_id_with_a_claimed_email_joins_the_api_user():
    resolver = IdentityResolver({})
    resolver.apply(claim("ada@example.com", email="ada@example.com"))
    resolver.apply(command("seen", distinct_id="anon-2"))
    resolver.apply(command("identify", anonymous_id="anon-2", user_id="user-77", email="ADA@example.com "))
    assert resolver.resolve("user-77") == resolver.resolve("anon-2") == API_PERSON


def test_a_hashed_email_from_a_hash_emails_source_finds_the_claim_too():
    resolver = IdentityResolver({})
    resolver.apply(claim("ada@example.com", email="ada@example.com"))
    hashed = email_claim_keys("ada@example.com")[1]
    resolver.apply(command("seen", distinct_id="user-9", user_id="user-9", email=hashed))
    assert resolver.resolve("user-9") == API_PERSON


def test_a_claimed_email_never_joins_a_second_account():
    resolver = IdentityResolver({})
    resolver.apply(claim("u1", user_id="u1", email="ada@example.com"))
    resolver.apply(command("identify", anonymous_id="anon-3", user_id="u2", email="ada@example.com"))
    assert resolver.resolve("u2") != API_PERSON  # the claimed person has a user id: identify's guard holds


def test_a_claim_racing_tracking_folds_the_api_person_into_the_holder():
    resolver = IdentityResolver({})
    resolver.apply(command("seen", distinct_id="u1", user_id="u1"))
    out = resolver.apply(claim("u1", user_id="u1"))
    assert [(m.from_person, m.into_person) for m in out.merges] == [(API_PERSON, person_id_for("u1"))]


def test_forget_unmaps_every_id_and_later_tracking_founds_a_fresh_person():
    resolver = IdentityResolver({})
    resolver.apply(command("seen", distinct_id="anon-1"))
    resolver.apply(command("identify", anonymous_id="anon-1", user_id="u1", email="a@b.co"))
    person = resolver.resolve("u1")
    out = resolver.apply(command("forget", person_id=person))
    assert sorted((m.distinct_id, m.is_deleted) for m in out.mappings) == [("anon-1", True), ("u1", True)]
    assert out.persons[0].deleted and resolver.resolve("u1") is None
    again = resolver.apply(command("identify", anonymous_id="anon-1", user_id="u1"))
    fresh = resolver.resolve("u1")
    assert fresh is not None and fresh != person and resolver.person(fresh).visitor_number > resolver.person(person).visitor_number
    assert all(not m.is_deleted for m in again.mappings)
    assert resolver.apply(command("forget", person_id=person)).mappings == []  # forgetting twice changes nothing


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["seen", "identify", "forget"]), st.sampled_from(["a", "b", "c"]), st.sampled_from(["u1", "u2"])),
        min_size=1,
        max_size=25,
    )
)
def test_a_deleted_person_id_never_comes_back(steps):
    resolver = IdentityResolver({})
    deleted: set[str] = set()
    for kind, anonymous, user in steps:
        if kind == "seen":
            resolver.apply(command("seen", distinct_id=anonymous))
        elif kind == "identify":
            resolver.apply(command("identify", anonymous_id=anonymous, user_id=user))
        elif (person := resolver.resolve(user)) is not None:
            resolver.apply(command("forget", person_id=person))
            deleted.add(person)
        live = {resolver.resolve(i) for i in ("a", "b", "c", "u1", "u2")} - {None}
        assert not live & deleted
