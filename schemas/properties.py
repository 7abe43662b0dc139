"""Custom property definitions and the rules a property value must follow. Pure: no I/O.

A definition names a property, its type and its constraints (HubSpot's contact properties, with JSON
Schema's constraint names). Definitions are records on the compacted `property-definitions` topic, keyed
by name; every change is a new record with the next version, a delete is a record with `deleted` set.
The default properties of a user are built-in definitions (`BUILT_IN`): they exist without a record,
cannot be deleted and keep their type, but their constraints can be tightened (e.g. make phone required).

`check_values` is the one validator: the management API (create, PATCH), the CSV import and the
projector (tracking's `$set`) all call it. It answers per property, naming the rule that failed, the
way HubSpot's API does. Whether a `unique` value is held by another user needs a lookup: `unique_values`
says which values to look up, the adapter does it.

Rules:
- types: string, number (finite, not a boolean), integer (a whole number within 64 bits; 3.0 counts),
  boolean, datetime (ISO 8601 text, or epoch milliseconds; normalised to ISO 8601 UTC), enum (one of
  `options`, exactly), email (email-validator's syntax check, no DNS), phone (phonenumbers: an
  international number, `+` and country code, valid for its country), url (pydantic's http(s) URL).
- constraints: `required` (present and not null or empty on create; never unset), `minimum`/`maximum`
  (number and integer, inclusive), `min_length`/`max_length` (characters; string, email, phone, url,
  enum), `pattern` (RE2 syntax, unanchored as in JSON Schema: anchor it with ^…$; string, email, phone,
  url), `unique` (no other user holds the same value).
- null is "no value": allowed unless the property is required.
- from text (CSV cells, `from_text=True`): numbers, integers and booleans are parsed from their text
  (true/false, yes/no, 1/0), an empty cell is no value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal, Protocol

import phonenumbers
import re2
from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, TypeAdapter, ValidationError, model_validator

ObjectType = Literal["user", "company"]  # what a definition types: a user's properties or a company's
PropertyType = Literal["string", "number", "integer", "boolean", "datetime", "enum", "email", "phone", "url"]
Rule = Literal["type", "required", "minimum", "maximum", "min_length", "max_length", "pattern", "options", "unique", "built_in"]
TEXT_TYPES = frozenset({"string", "email", "phone", "url", "enum"})
PATTERN_TYPES = frozenset({"string", "email", "phone", "url"})
NUMBER_TYPES = frozenset({"number", "integer"})
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.\-]{0,99}$"
INT64 = 2**63
_TRUE, _FALSE = frozenset({"true", "yes", "1"}), frozenset({"false", "no", "0"})
_URL = TypeAdapter(HttpUrl)


class PropertyDefinition(BaseModel):
    """One property's type and constraints; the value of the `property-definitions` topic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    type: PropertyType
    label: str = Field("", max_length=200)
    description: str = Field("", max_length=2000)
    options: list[str] | None = Field(None, min_length=1, max_length=1000)
    required: bool = False
    unique: bool = False
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = Field(None, ge=0)
    max_length: int | None = Field(None, ge=1)
    pattern: str | None = Field(None, max_length=1000)
    built_in: bool = False
    version: int = Field(1, ge=1)
    deleted: bool = False
    updated_at: datetime | None = None
    object_type: ObjectType = "user"

    @property
    def key(self) -> str:
        return definition_key(self.object_type, self.name)

    @model_validator(mode="after")
    def _constraints_fit_the_type(self) -> PropertyDefinition:
        problems = definition_problems(self)
        if problems:
            raise ValueError("; ".join(f"{rule}: {reason}" for rule, reason in problems))
        return self


def definition_key(object_type: ObjectType, name: str) -> str:
    """The record's key on the definitions topic: a user property's name as it always was, `company:<name>` else."""
    return name if object_type == "user" else f"{object_type}:{name}"


def definition_problems(definition: PropertyDefinition) -> list[tuple[str, str]]:
    """What is wrong with a definition itself: constraints that do not apply to its type, or contradict."""
    d, problems = definition, []
    if d.type == "enum" and not d.options:
        problems.append(("options", "an enum needs its options"))
    if d.type != "enum" and d.options is not None:
        problems.append(("options", f"only an enum has options, not a {d.type}"))
    if d.options is not None and len(set(d.options)) != len(d.options):
        problems.append(("options", "options must be distinct"))
    if (d.minimum is not None or d.maximum is not None) and d.type not in NUMBER_TYPES:
        problems.append(("minimum", f"minimum and maximum apply to number and integer, not {d.type}"))
    if d.minimum is not None and d.maximum is not None and d.minimum > d.maximum:
        problems.append(("minimum", "greater than maximum"))
    if any(not math.isfinite(v) for v in (d.minimum, d.maximum) if v is not None):
        problems.append(("minimum", "minimum and maximum must be finite numbers"))
    if (d.min_length is not None or d.max_length is not None) and d.type not in TEXT_TYPES:
        problems.append(("min_length", f"min_length and max_length apply to text types, not {d.type}"))
    if d.min_length is not None and d.max_length is not None and d.min_length > d.max_length:
        problems.append(("min_length", "greater than max_length"))
    if d.pattern is not None:
        if d.type not in PATTERN_TYPES:
            problems.append(("pattern", f"a pattern applies to string, email, phone and url, not {d.type}"))
        elif (error := pattern_error(d.pattern)) is not None:
            problems.append(("pattern", error))
    return problems


def pattern_error(pattern: str) -> str | None:
    try:
        _compiled(pattern)
    except re2.error as exc:
        return f"not a valid RE2 pattern: {exc}"
    return None


class _Pattern(Protocol):
    """What a compiled RE2 pattern offers here (google-re2 ships no type information)."""

    def search(self, text: str) -> object | None: ...


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> _Pattern:
    """RE2: matching time is linear in the value, whatever the pattern (no catastrophic backtracking)."""
    compiled: _Pattern = re2.compile(pattern)
    return compiled


def _built_in(name: str, type_: PropertyType, label: str, **constraints: Any) -> PropertyDefinition:
    return PropertyDefinition(name=name, type=type_, label=label, built_in=True, **constraints)


BUILT_IN: dict[str, PropertyDefinition] = {
    d.name: d
    for d in (
        _built_in("user_id", "string", "User id", unique=True, min_length=1, max_length=255),
        _built_in("email", "email", "Email", unique=True, max_length=254),
        _built_in("phone", "phone", "Phone number", max_length=64),
        _built_in("customer_id", "string", "Customer id", unique=True, min_length=1, max_length=255),
        _built_in("first_name", "string", "First name", max_length=255),
        _built_in("last_name", "string", "Last name", max_length=255),
        _built_in("name", "string", "Name", max_length=512),
        _built_in("company", "string", "Company", max_length=255),
        _built_in("city", "string", "City", max_length=255),
        _built_in("country", "string", "Country", max_length=255),
        _built_in("timezone", "string", "Time zone", max_length=64),
    )
}


@dataclass(frozen=True)
class PropertyError:
    """One property that broke one rule: what the API answers (422) and what a bad row records."""

    property: str
    rule: Rule
    reason: str
    value_type: str  # the JSON type of the value sent: string, number, integer, boolean, null, object, array

    def as_dict(self) -> dict[str, str]:
        return {"property": self.property, "rule": self.rule, "reason": self.reason, "value_type": self.value_type}


@dataclass
class Checked:
    """The outcome of checking one write: the values to apply (normalised) and the errors, per property.

    A property with an error has no value in `values`: callers that refuse the whole write (the API, the
    import) look at `errors`; tracking applies `values` and keeps `errors` as bad rows."""

    values: dict[str, Any] = field(default_factory=dict)
    unset: list[str] = field(default_factory=list)
    errors: list[PropertyError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def value_type(value: Any) -> str:
    """A value's JSON type name."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


class _Broken(Exception):
    def __init__(self, rule: Rule, reason: str):
        super().__init__(reason)
        self.rule, self.reason = rule, reason


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _typed(d: PropertyDefinition, value: Any, from_text: bool) -> Any:
    """The value as its type holds it, or _Broken("type" / "options")."""
    kind = d.type
    if kind in ("number", "integer"):
        if from_text and isinstance(value, str):
            value = _number_from_text(value.strip())
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Broken("type", f"expected {'an integer' if kind == 'integer' else 'a number'}, got {value_type(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise _Broken("type", "expected a finite number")
        if kind == "integer":
            if isinstance(value, float):
                if not value.is_integer():
                    raise _Broken("type", "expected an integer, got a fraction")
                value = int(value)
            if not -INT64 <= value < INT64:
                raise _Broken("type", "an integer must fit in 64 bits")
        return value
    if kind == "boolean":
        if from_text and isinstance(value, str):
            text = value.strip().lower()
            if text in _TRUE or text in _FALSE:
                return text in _TRUE
        if not isinstance(value, bool):
            raise _Broken("type", f"expected a boolean, got {value_type(value)}")
        return value
    if kind == "datetime":
        return _datetime(value)
    if not isinstance(value, str):
        raise _Broken("type", f"expected a string, got {value_type(value)}")
    if kind == "enum" and value not in (d.options or ()):
        raise _Broken("options", f"must be one of {', '.join(d.options or ())}")
    if kind == "email":
        _check_email(value.strip())
    if kind == "phone":
        _check_phone(value)
    if kind == "url" and not _is_http_url(value.strip()):
        raise _Broken("type", "not an http(s) URL")
    return value


def _check_email(address: str) -> None:
    """email-validator's verdict, without its full cost for the common shape: an ASCII dot-atom before the
    @ and a domain it already accepted unchanged. Anything else (and every refusal, for its message) goes
    through validate_email itself, so the answer is the library's (property-tested)."""
    plain = _PLAIN_EMAIL.fullmatch(address)
    if plain is not None and len(address) <= _EMAIL_MAX_LENGTH and _is_plain_email_domain(plain[1]):
        return
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise _Broken("type", f"not an email address: {exc}") from exc


# email-validator's ATEXT dot-atom (RFC 5322 3.2.3), then an ASCII domain; one @ only.
_PLAIN_EMAIL = re.compile(r"[A-Za-z0-9_!#$%&'*+\-/=?^`{|}~]+(?:\.[A-Za-z0-9_!#$%&'*+\-/=?^`{|}~]+)*@([a-z0-9.\-]+)")
_EMAIL_MAX_LENGTH = 254  # octets (RFC 3696 errata 1690); an ASCII address: characters


@lru_cache(maxsize=4096)
def _is_plain_email_domain(domain: str) -> bool:
    """The domain passes email-validator's checks and comes back as it was (no IDNA or case change): then
    any dot-atom local part before it makes a valid address of that length. Domains repeat across rows."""
    try:
        checked = validate_email(f"a@{domain}", check_deliverability=False)
    except EmailNotValidError:
        return False
    return bool(checked.domain == domain and checked.ascii_domain == domain)


@lru_cache(maxsize=4096)
def _is_http_url(text: str) -> bool:
    """pydantic's http(s) URL check; the same homepage or link repeats across an import's rows."""
    try:
        _URL.validate_python(text)
    except ValidationError:
        return False
    return True


def _number_from_text(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text  # refused below, as a string


def _check_phone(value: str) -> None:
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise _Broken("type", "not a phone number in international format (+ and the country code)") from exc
    if not phonenumbers.is_valid_number(number):
        raise _Broken("type", "not a valid phone number for its country")


def _datetime(value: Any) -> str:
    if isinstance(value, bool):
        raise _Broken("type", "expected a datetime (ISO 8601 or epoch milliseconds), got boolean")
    try:
        if isinstance(value, int | float):
            moment = datetime.fromtimestamp(value / 1000, UTC)
        elif isinstance(value, str):
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        else:
            raise _Broken("type", f"expected a datetime (ISO 8601 or epoch milliseconds), got {value_type(value)}")
    except (ValueError, OverflowError, OSError) as exc:
        raise _Broken("type", "not a datetime: ISO 8601 (2024-05-01T12:00:00Z) or epoch milliseconds") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _check_constraints(d: PropertyDefinition, value: Any) -> None:
    if d.type in NUMBER_TYPES:
        if d.minimum is not None and value < d.minimum:
            raise _Broken("minimum", f"must be at least {_number(d.minimum)}")
        if d.maximum is not None and value > d.maximum:
            raise _Broken("maximum", f"must be at most {_number(d.maximum)}")
    if d.type in TEXT_TYPES:
        if d.min_length is not None and len(value) < d.min_length:
            raise _Broken("min_length", f"must be at least {d.min_length} characters long")
        if d.max_length is not None and len(value) > d.max_length:
            raise _Broken("max_length", f"must be at most {d.max_length} characters long")
    if d.pattern is not None and d.type in PATTERN_TYPES and _compiled(d.pattern).search(value) is None:
        raise _Broken("pattern", f"must match the pattern {d.pattern}")


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def check_value(d: PropertyDefinition, value: Any, from_text: bool = False) -> Any:
    """The value normalised, or _Broken. Empty (None, blank text) is checked by the caller."""
    typed = _typed(d, value, from_text)
    _check_constraints(d, typed)
    return typed


def check_values(
    definitions: Mapping[str, PropertyDefinition],
    set_: Mapping[str, Any],
    unset: Iterable[str] = (),
    *,
    creating: bool = False,
    from_text: bool = False,
) -> Checked:
    """Check one write (properties to set and to unset) against the definitions.

    Properties without a definition are free-form and pass as they are. `creating`: every required
    property must be set. Errors come in the order of the write, one per property (its first broken rule).
    """
    checked = Checked()
    for name, value in set_.items():
        d = definitions.get(name)
        if d is None or d.deleted:
            checked.values[name] = value
            continue
        if _is_empty(value) and d.required:
            checked.errors.append(PropertyError(name, "required", "is required and cannot be empty", value_type(value)))
            continue
        if value is None or (from_text and _is_empty(value)):
            checked.values[name] = None
            continue
        try:
            checked.values[name] = check_value(d, value, from_text)
        except _Broken as broken:
            checked.errors.append(PropertyError(name, broken.rule, broken.reason, value_type(value)))
    for name in unset:
        d = definitions.get(name)
        if d is not None and not d.deleted and d.required:
            checked.errors.append(PropertyError(name, "required", "is required and cannot be unset", "null"))
        else:
            checked.unset.append(name)
    if creating:
        missing = [d.name for d in definitions.values() if d.required and not d.deleted and d.name not in set_]
        checked.errors += [PropertyError(name, "required", "is required", "null") for name in missing]
    return checked


def unique_values(definitions: Mapping[str, PropertyDefinition], values: Mapping[str, Any]) -> dict[str, Any]:
    """The values a write sets for unique properties: the adapter checks no other user holds them (409)."""
    return {
        name: value
        for name, value in values.items()
        if value is not None and (d := definitions.get(name)) is not None and d.unique and not d.deleted
    }


def change_problems(current: PropertyDefinition | None, new: PropertyDefinition) -> list[tuple[str, str]]:
    """Why `new` may not replace `current` (PUT): a built-in keeps its type and stays built in."""
    if current is None or not current.built_in:
        return [] if not new.built_in else [("built_in", "only the default properties are built in")]
    if new.type != current.type:
        return [("type", f"{current.name} is a default property: its type stays {current.type}")]
    return []


def effective(records: Iterable[PropertyDefinition], object_type: ObjectType = "user") -> dict[str, PropertyDefinition]:
    """The definitions in force for one object type: the built-ins (users'), then each name's newest record
    (deleted ones dropped, a deleted built-in falls back to its default)."""
    latest: dict[str, PropertyDefinition] = {}
    for record in records:
        if record.object_type != object_type:
            continue
        if record.name not in latest or record.version >= latest[record.name].version:
            latest[record.name] = record
    current = dict(BUILT_IN) if object_type == "user" else {}
    for name, record in latest.items():
        if record.deleted:
            if name not in BUILT_IN:
                current.pop(name, None)
        else:
            current[name] = record
    return current
