"""What tracking SDKs send: the Segment HTTP Tracking API (track, identify, page, screen, group, alias).

The model accepts payloads from Segment's and RudderStack's libraries unchanged. Validation errors
name the field, so the collector can answer "userId: ..." instead of a bare 400. Every check that can
run inside pydantic-core does (lengths, time zones, number-to-string ids): the collector validates
each of up to 100,000 events a second per worker, so only the rules that relate fields run in Python.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

CallType = Literal["track", "identify", "page", "screen", "group", "alias"]
CALL_TYPES: tuple[str, ...] = ("track", "identify", "page", "screen", "group", "alias")

MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_EVENTS = 2_500
MAX_ID_LENGTH = 100
MAX_NAME_LENGTH = 1_000
MAX_NESTING_DEPTH = 16
MAX_STRING_LENGTH = 8_192

Id = Annotated[str, Field(max_length=MAX_ID_LENGTH)]
MessageId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]
Name = Annotated[str, Field(max_length=MAX_NAME_LENGTH)]
Payload = dict[str, Any]
ID_FIELDS = ("messageId", "anonymousId", "userId", "previousId", "groupId")
FLOAT_ID = "a number id must be an integer within 64 bits; send it as a string"


class TrackingCall(BaseModel):
    """One call as an SDK sends it (camelCase on the wire).

    Numeric ids are kept as strings (`coerce_numbers_to_str`), so `42` and `"42"` are one user; an id
    must be an integer to be a number: a fraction, or an integer past 64 bits (which the JSON parser
    reads as a float, so that 2**70 and 2**70 + 1 would be one "1.1805916207174113e+21"), is refused.
    Booleans are refused. Timestamps must carry a time zone.
    """

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)

    type: CallType
    messageId: MessageId | None = None
    anonymousId: Id | None = None
    userId: Id | None = None
    previousId: Id | None = None
    groupId: Id | None = None
    event: Name | None = None
    name: Name | None = None
    category: Name | None = None
    properties: Payload = Field(default_factory=dict)
    traits: Payload = Field(default_factory=dict)
    context: Payload = Field(default_factory=dict)
    integrations: Payload = Field(default_factory=dict)
    timestamp: AwareDatetime | None = None
    originalTimestamp: AwareDatetime | None = None
    sentAt: AwareDatetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _integer_ids(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in ID_FIELDS:
                if type(data.get(name)) is float:
                    raise ValueError(f"{name}: {FLOAT_ID}")
        return data

    @model_validator(mode="after")
    def _rules_of_each_type(self) -> TrackingCall:
        if self.type == "alias":
            if not self.previousId:
                raise ValueError("previousId: required for alias")
            if not self.userId:
                raise ValueError("userId: required for alias")
        elif not (self.userId or self.anonymousId):
            raise ValueError("userId or anonymousId: one of them is required")
        if self.type == "track" and not self.event:
            raise ValueError("event: required for track")
        if self.type == "group" and not self.groupId:
            raise ValueError("groupId: required for group")
        return self

    @property
    def client_time(self) -> datetime | None:
        """When the call happened by the client's clock (server libraries send it as `timestamp`)."""
        return self.originalTimestamp or self.timestamp


class BatchEnvelope(BaseModel):
    """A batch request: the calls, and what every call inherits (context, sentAt, writeKey)."""

    model_config = ConfigDict(extra="ignore")

    batch: list[Any] = Field(max_length=MAX_BATCH_EVENTS)
    context: Payload = Field(default_factory=dict)
    integrations: Payload = Field(default_factory=dict)
    sentAt: AwareDatetime | None = None


def shape_problem(value: Any, path: str, depth: int = 1) -> tuple[str, str, str] | None:
    """The first place where `value` nests deeper than MAX_NESTING_DEPTH or holds a string (or key)
    longer than MAX_STRING_LENGTH, as (field path, rule, reason); None when it is within bounds."""
    if depth > MAX_NESTING_DEPTH:
        return path, "nesting_over_limit", f"nested deeper than {MAX_NESTING_DEPTH} levels"
    if isinstance(value, str):
        if len(value) > MAX_STRING_LENGTH:
            return path, "string_over_limit", f"string longer than {MAX_STRING_LENGTH} characters"
    elif isinstance(value, dict):
        for key, item in value.items():
            if len(key) > MAX_STRING_LENGTH:
                return path, "key_over_limit", f"key longer than {MAX_STRING_LENGTH} characters"
            if problem := shape_problem(item, f"{path}.{key}", depth + 1):
                return problem
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if problem := shape_problem(item, f"{path}[{index}]", depth + 1):
                return problem
    return None
