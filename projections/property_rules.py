"""Tracking meets property definitions: the event is kept, a value that breaks its definition is not. Pure.

Tracking calls are never refused because of a property (the collector does not know the definitions, and an
event is a fact). Before an event is folded into its person's profile, `screen` checks its property writes
(identify traits, `$set`, `$set_once`, `$unset`) with schemas/properties.py: the writes that break a rule
are taken out of the copy the profile sees, and each becomes a violation. The events table keeps the event
exactly as it came. `violation_bad_row` is the one place a violation becomes a bad row (dead-letter topic):
the property, where it was written, the rule, the value's JSON type and the value itself.

An email that a source hashed at the collector (`sha256:<hex>`, ingest/privacy.py) is a pseudonymised
address and passes the email type.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson

from schemas.bad_rows import Problem, stream_bad_row
from schemas.events import EnrichedEvent
from schemas.properties import PropertyDefinition, PropertyError, check_values

HASHED_EMAIL = re.compile(r"sha256:[0-9a-f]{64}")
MAX_KEPT_VALUE_CHARS = 4096


class Violation(NamedTuple):
    """One property write of one event that its definition refused."""

    where: str  # traits, properties.$set, properties.$set_once, properties.$unset
    error: PropertyError
    value: Any


def _hashed_emails(definitions: Mapping[str, PropertyDefinition], writes: Mapping[str, Any]) -> set[str]:
    return {
        name
        for name, value in writes.items()
        if isinstance(value, str) and HASHED_EMAIL.fullmatch(value) and (d := definitions.get(name)) is not None and d.type == "email"
    }


# Traits that Segment's spec defines as objects (identify's reserved traits): an SDK sending them as the spec
# says is never a violation, whatever a definition of the same name says about a plain value.
SPEC_OBJECT_TRAITS = frozenset({"company", "address"})


def _spec_objects(writes: Mapping[str, Any], where: str) -> set[str]:
    if where != "traits":
        return set()
    return {name for name in SPEC_OBJECT_TRAITS if isinstance(writes.get(name), dict)}


def _screened(
    definitions: Mapping[str, PropertyDefinition], writes: dict[str, Any], where: str, violations: list[Violation]
) -> dict[str, Any]:
    """writes without the values their definitions refuse (each refused one added to violations)."""
    passed = _hashed_emails(definitions, writes) | _spec_objects(writes, where)
    checked = check_values(definitions, {k: v for k, v in writes.items() if k not in passed})
    if checked.ok:
        return writes
    refused = {e.property for e in checked.errors}
    violations += [Violation(where, e, writes.get(e.property)) for e in checked.errors]
    return {k: v for k, v in writes.items() if k not in refused}


def screen(event: EnrichedEvent, definitions: Mapping[str, PropertyDefinition]) -> tuple[EnrichedEvent, list[Violation]]:
    """The event as the profile should see it, and what was taken out. Most events write no property and
    come back as they are."""
    traits = event.traits if event.type == "identify" and event.traits else None
    properties = event.properties
    writes = {name: properties[name] for name in ("$set", "$set_once") if isinstance(properties.get(name), dict)}
    unset = properties.get("$unset")
    if traits is None and not writes and not isinstance(unset, list):
        return event, []
    violations: list[Violation] = []
    new_traits = _screened(definitions, traits, "traits", violations) if traits is not None else event.traits
    new_properties = dict(properties)
    for name, written in writes.items():
        new_properties[name] = _screened(definitions, written, f"properties.{name}", violations)
    if isinstance(unset, list):
        keys = [key for key in unset if isinstance(key, str)]
        checked = check_values(definitions, {}, keys)
        if not checked.ok:
            violations += [Violation("properties.$unset", e, None) for e in checked.errors]
            new_properties["$unset"] = checked.unset
    if not violations:
        return event, []
    return event.model_copy(update={"traits": new_traits, "properties": new_properties}), violations


def screen_group_call(event: EnrichedEvent, definitions: Mapping[str, PropertyDefinition]) -> tuple[EnrichedEvent, list[Violation]]:
    """A group call as its company should see it: its traits (the company's properties) checked against the
    company property definitions; the refused ones taken out, each a violation."""
    if not definitions or not event.traits:
        return event, []
    violations: list[Violation] = []
    traits = _screened(definitions, event.traits, "traits", violations)
    return (event.model_copy(update={"traits": traits}), violations) if violations else (event, [])


def violation_bad_row(event: EnrichedEvent, violation: Violation, origin: str | None = None) -> bytes:
    """The dead-letter record of one refused property value (the event itself was kept): kind
    `property_violation`, problems[0] = field `<where>.<property>`, rule the definition's rule (type, options,
    minimum, ...), reason starting with the value's type: `(string) not an email address: ...`. The payload
    names the event and holds the refused value; the `bad_rows` table has them as columns."""
    error = violation.error
    value = orjson.dumps(violation.value, default=str).decode()
    payload = {
        "message_id": event.message_id,
        "distinct_id": event.distinct_id,
        "person_id": event.person_id,
        "property": error.property,
        "rule": error.rule,
        "value_type": error.value_type,
        "value": value[:MAX_KEPT_VALUE_CHARS],
    }
    problem = Problem(
        field=f"{violation.where}.{error.property}", reason=f"({error.value_type}) {error.property} {error.reason}", rule=error.rule
    )
    return stream_bad_row("property_violation", "projector", orjson.dumps(payload), problem, origin, event.source_id).encode()
