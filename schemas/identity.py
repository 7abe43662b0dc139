"""Identity resolution's messages: commands into the resolver, and the mappings and merges it decides."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

CommandKind = Literal["seen", "identify", "alias", "claim", "forget"]
PERSON_NAMESPACE = uuid.UUID("a8e07382-ab05-4da0-9125-908ea05d2bb3")


def person_id_for(distinct_id: str) -> str:
    """The id of the person a distinct id founds: known before any merge, identical on replay. Shared: the
    processors stamp it before a mapping is known, and the projection recognises such stamps."""
    return str(uuid.uuid5(PERSON_NAMESPACE, distinct_id))


# Placeholders SDKs and apps send where an id should be (PostHog #5527, #11873): never ids, never merged.
ILLEGAL_IDS = frozenset(
    {"", "0", "-1", "null", "nil", "none", "nan", "undefined", "unknown", "true", "false", "[object object]",
     "anonymous", "guest", "not_authenticated", "email", "id", "distinct_id", "distinctid", "user_id", "userid",
     "anonymous_id", "anonymousid"}
)  # fmt: skip


def is_illegal_id(value: str | None) -> bool:
    """Whether value is missing or a placeholder that would fuse unrelated visitors into one person."""
    if value is None:
        return True
    bare = value.strip().lower()
    if len(bare) >= 2 and bare[0] == bare[-1] and bare[0] in "'\"":
        bare = bare[1:-1].strip()
    return bare in ILLEGAL_IDS


class IdentityCommand(BaseModel):
    """What the event path tells the resolver: a distinct id was seen, or two ids were linked.

    `seen`: distinct_id appeared (first event of a device, or a user id); `identify`: anonymous_id and
    user_id belong together; `alias`: previous_id merges into user_id. From the management API: `claim`:
    distinct_id's person (founded if new) takes user_id and claims email, so tracking that later identifies
    with either joins it; `forget`: person_id is deleted, its ids are free for a fresh person.
    """

    model_config = ConfigDict(frozen=True)

    kind: CommandKind
    message_id: str
    timestamp: datetime
    distinct_id: str | None = None  # seen
    anonymous_id: str | None = None  # identify
    user_id: str | None = None  # identify, alias
    previous_id: str | None = None  # alias
    email: str | None = None  # identify traits.email: makes a person identified and a contact
    contact_traits: list[str] = []  # which key identifying traits were present (email, phone, ...)
    person_id: str | None = None  # forget


class DistinctIdMapping(BaseModel):
    """distinct_id now resolves to person_id. Versions grow; the highest wins (upsert by distinct_id)."""

    model_config = ConfigDict(frozen=True)

    distinct_id: str
    person_id: str
    version: int
    is_deleted: bool = False


class PersonMerge(BaseModel):
    """from_person was merged into into_person: its history belongs to into_person from now on."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["person_merge"] = "person_merge"
    from_person: str
    into_person: str
    version: int
    reason: Literal["identify", "alias"]
    timestamp: datetime


class PersonIdentity(BaseModel):
    """The identity facts of one person, as the resolver knows them (feeds the profile's flags)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["person_identity"] = "person_identity"
    person_id: str
    visitor_number: int  # "Visitor 451": unique across the deployment, never reused
    identified: bool
    is_contact: bool
    version: int
    merged_into: str | None = None
    deleted: bool = False  # deleted through the management API: never a live profile again


PersonMessage = Annotated[PersonMerge | PersonIdentity, Field(discriminator="kind")]
person_message = TypeAdapter(PersonMessage)
