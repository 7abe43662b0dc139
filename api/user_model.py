"""Users as the API takes them: request bodies, `{ref}`s, and the commands a write becomes. Pure: no I/O.

A create becomes two commands, published together: a `claim` on the identity sequencer (so the person is
the one tracking later identifies with the same user id or email: schemas/identity.py) and a `create` on
user-commands (the properties, status and tags, applied by the profile projection). A PATCH that sets
user_id or email claims them too. A delete also `forget`s the person at the sequencer, so later tracking
with the same ids starts a fresh person; an erase also suppresses the ids (the `erasures` topic).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.commands import Record
from api.errors import ApiError, FieldError
from schemas.identity import IdentityCommand, is_illegal_id
from schemas.topics import Topics
from schemas.user_commands import (
    DEFAULT_PROPERTIES,
    IDENTIFIERS,
    Erasure,
    UserCommand,
    UserStatus,
    email_key,
    id_digest,
)

MAX_PROPERTIES = 1_000
MAX_TAGS = 100
PROPERTY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1024)]
ListId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class UserFields(BaseModel):
    """The default properties (issue 16); `properties` holds the custom ones."""

    model_config = ConfigDict(extra="forbid")

    user_id: Text | None = None
    email: Text | None = None
    phone: Text | None = None
    customer_id: Text | None = None
    first_name: Text | None = None
    last_name: Text | None = None
    name: Text | None = None
    company: Text | None = None
    city: Text | None = None
    country: Text | None = None
    timezone: Text | None = None


class UserCreate(UserFields):
    properties: dict[str, Any] = Field(default_factory=dict, description="custom properties")
    status: UserStatus = "active"
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)
    stage: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] | None = Field(
        None, description="the lifecycle stage (an id of GET /api/v1/lifecycle-stages)"
    )


class TagEdit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    add: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)
    remove: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)


class ListEdit(BaseModel):
    """List ids to add the user to and remove it from; `by`: who, kept with the membership."""

    model_config = ConfigDict(extra="forbid")

    add: list[ListId] = Field(default_factory=list, max_length=MAX_TAGS)
    remove: list[ListId] = Field(default_factory=list, max_length=MAX_TAGS)
    by: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] = ""


class UserPatch(BaseModel):
    """`set` writes default and custom properties alike; `unset` removes them; both compete by time with
    tracking's `$set`/`$unset` (SCHEMA.md). `stage` sets the lifecycle stage (backwards too), with its reason."""

    model_config = ConfigDict(extra="forbid")

    set: dict[str, Any] = Field(default_factory=dict)
    unset: list[str] = Field(default_factory=list, max_length=MAX_PROPERTIES)
    status: UserStatus | None = None
    tags: TagEdit | None = None
    stage: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] | None = None
    stage_reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] = ""
    lists: ListEdit | None = None


# -- refs -----------------------------------------------------------------------------------------------

RefKind = Literal["person_id", "distinct_id", "email"]


@dataclass(frozen=True)
class Ref:
    kind: RefKind
    value: str


def parse_ref(ref: str) -> Ref:
    """`{ref}`: a person id, or `user_id:<id>`, `email:<address>`, `distinct_id:<id>`."""
    prefix, colon, rest = ref.partition(":")
    if colon and prefix in ("user_id", "distinct_id"):
        if not rest:
            raise ApiError.of(422, "ref", "format", f"{prefix}: needs an id after the colon")
        return Ref("distinct_id", rest)
    if colon and prefix == "email":
        if not rest.strip():
            raise ApiError.of(422, "ref", "format", "email: needs an address after the colon")
        return Ref("email", email_key(rest))
    try:
        return Ref("person_id", str(uuid.UUID(ref)))
    except ValueError:
        raise ApiError.of(
            422, "ref", "format", "a user is named by its person id, user_id:<id>, email:<address> or distinct_id:<id>"
        ) from None


# -- validation -----------------------------------------------------------------------------------------


def check_property_names(names: list[str] | set[str], where: str) -> list[FieldError]:
    return [
        FieldError(
            f"{where}.{name}" if where else name,
            "property_name",
            "a property name is 1-128 letters, digits, '_', '.' or '-', starting with a letter or '_'",
        )
        for name in names
        if not PROPERTY_NAME.match(name)
    ]


def check_identifier_values(values: dict[str, Any]) -> list[FieldError]:
    """The identifiers' own rules: a string, not a placeholder ("undefined", "null", ...), emails that are emails."""
    errors = []
    for name in IDENTIFIERS:
        if name not in values or values[name] is None:
            continue
        value = values[name]
        if not isinstance(value, str) or not value.strip():
            errors.append(FieldError(name, "type", f"{name} must be a non-empty string"))
        elif is_illegal_id(value):
            errors.append(FieldError(name, "placeholder", f"{value!r} is a placeholder, not an identifier"))
        elif name == "email" and not EMAIL.match(value.strip()):
            errors.append(FieldError(name, "email", f"{value!r} is not an email address"))
    return errors


def create_properties(body: UserCreate) -> dict[str, Any]:
    """Every property the create sets: defaults (given ones only) and custom ones, emails normalised."""
    defaults = body.model_dump(include=set(DEFAULT_PROPERTIES), exclude_none=True)
    if "email" in defaults:
        defaults["email"] = email_key(defaults["email"])
    return {**body.properties, **defaults}


def validate_create(body: UserCreate) -> dict[str, Any]:
    """The properties to set, or ApiError(422) naming each broken rule."""
    errors = check_property_names(set(body.properties), "properties")
    errors += [
        FieldError(f"properties.{name}", "default_property", f"{name} is a default property: send it at the top level")
        for name in body.properties
        if name in DEFAULT_PROPERTIES
    ]
    if len(body.properties) > MAX_PROPERTIES:
        errors.append(FieldError("properties", "max_properties", f"at most {MAX_PROPERTIES} properties"))
    properties = create_properties(body)
    errors += check_identifier_values(properties)
    if not any(getattr(body, name) for name in IDENTIFIERS):
        errors.append(FieldError("user_id", "required_identifier", "at least one of user_id, email, phone or customer_id is required"))
    if errors:
        raise ApiError(422, errors)
    return properties


def validate_patch(body: UserPatch) -> UserPatch:
    errors = check_property_names(set(body.set), "set") + check_property_names(set(body.unset), "unset")
    if len(body.set) > MAX_PROPERTIES:
        errors.append(FieldError("set", "max_properties", f"at most {MAX_PROPERTIES} properties"))
    errors += [FieldError(f"set.{e.field}", e.rule, e.message) for e in check_identifier_values(body.set)]
    errors += [
        FieldError(f"unset.{name}", "identifier_kept", "user_id links tracking to this user and cannot be unset")
        for name in body.unset
        if name == "user_id"
    ]
    errors += [FieldError(f"unset.{name}", "conflict", f"{name} is both set and unset") for name in body.unset if name in body.set]
    if errors:
        raise ApiError(422, errors)
    if "email" in body.set and isinstance(body.set["email"], str):
        return body.model_copy(update={"set": {**body.set, "email": email_key(body.set["email"])}})
    return body


def primary_distinct_id(properties: dict[str, Any]) -> str:
    """The id a created person is founded by: the user id, else the email, else the customer id or phone
    (prefixed, so they never collide with a tracking id)."""
    if properties.get("user_id"):
        return properties["user_id"]
    if properties.get("email"):
        return properties["email"]
    if properties.get("customer_id"):
        return f"customer_id:{properties['customer_id']}"
    return f"phone:{properties['phone']}"


def contact_traits(properties: dict[str, Any]) -> list[str]:
    return [name for name in ("email", "phone") if properties.get(name)]


# -- commands -------------------------------------------------------------------------------------------


def _identity(command: IdentityCommand, topics: Topics) -> Record:
    key = command.distinct_id or command.person_id or ""
    return Record(topics.identity_commands.name, key, command.model_dump_json().encode())


def _user(command: UserCommand, topics: Topics) -> Record:
    return Record(topics.user_commands.name, command.person_id, command.model_dump_json().encode())


def create_records(
    topics: Topics, properties: dict[str, Any], body: UserCreate, person_id: str, command_id: str, at: datetime, by: str = "api"
) -> list[Record]:
    claim = IdentityCommand(
        kind="claim",
        message_id=f"{command_id}:claim",
        timestamp=at,
        person_id=person_id,
        distinct_id=primary_distinct_id(properties),
        user_id=properties.get("user_id"),
        email=properties.get("email"),
        contact_traits=contact_traits(properties),
    )
    create = UserCommand(
        kind="create",
        command_id=command_id,
        person_id=person_id,
        at=at,
        set=properties,
        status=body.status,
        tags_add=list(dict.fromkeys(body.tags)),
        stage=body.stage,
        stage_by=by if body.stage else None,
        by=by,
    )
    return [_identity(claim, topics), _user(create, topics)]


def update_command(
    body: UserPatch, person_id: str, command_id: str, at: datetime, job_id: str | None = None, by: str = "api"
) -> UserCommand:
    """`by`: what made the change, kept with a stage write ("api", "import") and, unless the body names
    someone, with list memberships."""
    tags, lists = body.tags or TagEdit(), body.lists or ListEdit()
    return UserCommand(
        kind="update",
        command_id=command_id,
        person_id=person_id,
        at=at,
        set=body.set,
        unset=list(dict.fromkeys(body.unset)),
        status=body.status,
        tags_add=list(dict.fromkeys(tags.add)),
        tags_remove=list(dict.fromkeys(tags.remove)),
        job_id=job_id,
        stage=body.stage,
        stage_by=by if body.stage else None,
        stage_reason=body.stage_reason if body.stage else "",
        lists_add=list(dict.fromkeys(lists.add)),
        lists_remove=list(dict.fromkeys(lists.remove)),
        lists_by=(lists.by or by) if lists.add or lists.remove else "",
        by=by,
    )


def update_records(
    topics: Topics,
    body: UserPatch,
    person_id: str,
    known_id: str | None,
    command_id: str,
    at: datetime,
    job_id: str | None = None,
    by: str = "api",
) -> list[Record]:
    """The update, and a claim when it sets user_id or email (known_id: one of the person's distinct ids)."""
    records = []
    user_id, email = body.set.get("user_id"), body.set.get("email")
    if known_id and (isinstance(user_id, str) or isinstance(email, str)):
        claim = IdentityCommand(
            kind="claim",
            message_id=f"{command_id}:claim",
            timestamp=at,
            distinct_id=known_id,
            user_id=user_id if isinstance(user_id, str) else None,
            email=email if isinstance(email, str) else None,
            contact_traits=contact_traits(body.set),
        )
        records.append(_identity(claim, topics))
    records.append(_user(update_command(body, person_id, command_id, at, job_id, by), topics))
    return records


def identifiers_of(distinct_ids: list[str], email: str | None) -> list[str]:
    return sorted({*distinct_ids, *([email_key(email)] if email else [])})


def delete_records(
    topics: Topics,
    kind: Literal["delete", "erase"],
    person_id: str,
    identifiers: list[str],
    command_id: str,
    at: datetime,
    job_id: str | None = None,
) -> list[Record]:
    """delete: forget at the sequencer + the delete command. erase: the same, and each id suppressed."""
    digests = sorted({id_digest(i) for i in identifiers})
    forget = IdentityCommand(kind="forget", message_id=f"{command_id}:forget", timestamp=at, person_id=person_id)
    command = UserCommand(kind=kind, command_id=command_id, person_id=person_id, at=at, id_digests=digests, job_id=job_id)
    records = [_user(command, topics), _identity(forget, topics)]
    if kind == "erase":
        records += [
            Record(
                topics.erasures.name,
                digest,
                Erasure(id_digest=digest, erasure_id=command_id, person_id=person_id, erased_at=at).model_dump_json().encode(),
            )
            for digest in digests
        ]
    return records
