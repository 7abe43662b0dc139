"""Webhooks, the pure parts (schemas/webhooks.py): which changes a subscription wants, the signature a receiver
checks, and the webhooks in force."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from schemas.profile_changes import CHANGE_KINDS, ProfileChange
from schemas.webhooks import WebhookDefinition, live_webhooks, matches, signature, verify

AT = datetime(2026, 11, 30, tzinfo=UTC)
IDS = st.sampled_from(["a", "b", "c"])


def hook(**fields) -> WebhookDefinition:
    return WebhookDefinition(**{"id": "w", "url": "https://example.com", "secret": "x" * 16, "created_at": AT, "updated_at": AT, **fields})


@st.composite
def changes(draw) -> ProfileChange:
    kind = draw(st.sampled_from(CHANGE_KINDS))
    return ProfileChange(
        change_id="c", person_id="p", kind=kind, at=AT, source="api",
        subject=draw(IDS), before=draw(st.one_of(st.none(), IDS)), after=draw(st.one_of(st.none(), IDS)),
    )  # fmt: skip


@given(changes(), st.lists(st.sampled_from(CHANGE_KINDS), max_size=3), st.lists(IDS, max_size=2), st.lists(IDS, max_size=2))
def test_a_change_matches_its_kinds_and_the_groups_it_concerns(change, kinds, stages, lists):
    webhook = hook(kinds=kinds, stages=stages, lists=lists)
    wanted = matches(webhook, change)
    if kinds and change.kind not in kinds:
        assert not wanted
    elif not stages and not lists:
        assert wanted  # no group filter: every change of the kinds
    elif change.kind == "stage_changed":
        assert wanted == bool({change.before, change.after} & set(stages))
    elif change.kind in ("list_added", "list_removed"):
        assert wanted == (change.subject in lists)
    else:
        assert not wanted  # a group filter wants only that group's changes
    assert not matches(webhook.model_copy(update={"enabled": False}), change)


def test_a_segment_filter_wants_its_segments_enter_and_exit():
    webhook = hook(segments=["s1"])
    entered = ProfileChange(change_id="c", person_id="p", kind="segment_entered", at=AT, source="segment:s1", subject="s1")
    assert matches(webhook, entered)
    assert not matches(webhook, entered.model_copy(update={"subject": "s2"}))


@given(st.binary(max_size=300), st.text(min_size=16, max_size=40))
def test_the_signature_is_hmac_sha256_of_the_body(body, secret):
    header = signature(secret, body)
    assert header == "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert verify(secret, body, header)
    assert not verify(secret, body + b" ", header)
    assert not verify(secret + "x", body, header)


def test_live_webhooks_take_each_ids_newest_version_and_drop_deleted_ones():
    first, renamed = hook(id="a", version=1), hook(id="a", url="https://example.com/v2", version=2)
    gone = hook(id="b", version=1), hook(id="b", version=2, deleted=True)
    assert live_webhooks([renamed, first, *gone]) == {"a": renamed}
