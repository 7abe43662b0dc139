"""processors.runtime.DirectWrites: table writes whose changelog records the runtime sends itself (no broker:
a stand-in table with a dict store, and the event being handled)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from processors.identity import IdentityResolver
from processors.runtime import DirectWrites, handling
from schemas.identity import IdentityCommand


class Record:
    """What a table write reads from the event being handled: its message's partition."""

    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(partition=partition)


def test_writes_reach_the_store_at_once_and_their_changelog_records_wait_in_order_by_the_handled_partition():
    table = SimpleNamespace(data={b"old": b"1"})
    writes = DirectWrites(table)
    first, second = Record(2), Record(3)
    with handling(first):
        writes[b"a"] = b"x"
        writes.pop(b"old")
    with handling(second):
        writes[b"a"] = b"y"
        writes.pop(b"missing", None)  # nothing to delete: no changelog record
    assert table.data == {b"a": b"y"} and writes[b"a"] == b"y" and len(writes) == 1 and list(writes) == [b"a"]
    assert writes.take_pending() == [(2, b"a", b"x"), (2, b"old", None), (3, b"a", b"y")]
    assert writes.take_pending() == []


def test_a_write_outside_an_handled_event_is_refused():
    writes = DirectWrites(SimpleNamespace(data={}))
    with pytest.raises(RuntimeError, match="handled"):
        writes[b"a"] = b"x"


def test_the_identity_sequencer_on_direct_writes_leaves_what_it_leaves_on_a_plain_mapping():
    """Its journal protocol relies on the order of its writes: the changelog records keep it."""
    commands = [
        IdentityCommand(kind="seen", message_id="m1:seen", timestamp="2026-03-02T12:00:00Z", distinct_id="anon-1"),
        IdentityCommand(
            kind="identify", message_id="m2:identify", timestamp="2026-03-02T12:01:00Z", anonymous_id="anon-1", user_id="user-1"
        ),
    ]
    plain: dict = {}
    direct = DirectWrites(SimpleNamespace(data={}))
    for store in (plain, direct):
        resolver = IdentityResolver(store)
        with handling(Record(0)):
            for command in commands:
                resolver.apply(command)
    assert direct.table.data == plain
    replayed: dict = {}
    for _, key, value in direct.take_pending():  # what recovery from the changelog rebuilds
        if value is None:
            replayed.pop(key, None)
        else:
            replayed[key] = value
    assert replayed == plain
