"""Dynamic configs: definitions, their versions on Kafka, deterministic bucketing and the pure evaluator.

docs/configs.md states the bucketing exactly; tests/vectors/config_bucketing.json holds vectors that any
client library can check itself against. Everything here is pure (no I/O): the collector serves with it,
the management API previews with it, the same code decides both.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

from schemas.conditions import TARGETING_KINDS, Condition, compile_condition, evaluate, kind_paths, references
from schemas.identity import is_illegal_id
from schemas.tracking import FLOAT_ID, Id

CONFIG_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$"
VARIANT_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
ConfigType = Literal["boolean", "string", "json"]
Reason = Literal["rule_match", "override", "rollout_excluded", "default", "disabled"]
EXPOSURE_EVENT = "$config_served"


# -- bucketing ----------------------------------------------------------------------------------------


def bucket(config_key: str, salt: str, bucketing_id: str) -> float:
    """A number in [0, 1), the same for the same inputs in every language: SHA-256 over the UTF-8 bytes of
    `config_key + ":" + salt + ":" + bucketing_id`, the first 8 bytes read as a big-endian unsigned
    integer, shifted right by 11 bits (53 bits remain, exact in a double) and divided by 2**53."""
    digest = hashlib.sha256(f"{config_key}:{salt}:{bucketing_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> 11) / 9007199254740992.0


def rollout_salt(salt: str) -> str:
    return f"{salt}/rollout"


def variant_salt(salt: str) -> str:
    return f"{salt}/variant"


def in_rollout(config_key: str, salt: str, bucketing_id: str, percent: float) -> bool:
    """In iff the rollout bucket is below percent/100: raising the percentage only ever adds people."""
    return bucket(config_key, rollout_salt(salt), bucketing_id) < percent / 100


def split(variants: list[Variant], config_key: str, salt: str, bucketing_id: str) -> str:
    """The variant whose cumulative weight range holds the variant bucket: the first with b * total < cumulative."""
    total = sum(v.weight for v in variants)
    scaled = bucket(config_key, variant_salt(salt), bucketing_id) * total
    cumulative = 0
    for variant in variants:
        cumulative += variant.weight
        if variant.weight and scaled < cumulative:
            return variant.key
    return next(v.key for v in reversed(variants) if v.weight)  # unreachable for b < 1; kept total


# -- definitions ---------------------------------------------------------------------------------------


class Variant(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(pattern=VARIANT_KEY_PATTERN)
    value: JsonValue = None  # boolean: true/false; string: the text served (default: the key); json: any payload
    weight: int = Field(default=0, ge=0, le=1_000_000)  # relative share in a rule without a fixed variant
    description: str = Field(default="", max_length=1000)


class Rule(BaseModel):
    """Targeting: who (the condition; none means everyone), how many of them (rollout), and what they get
    (a fixed variant, or the variants' weighted split)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    condition: Condition | None = None
    rollout_percent: float = Field(default=100.0, ge=0, le=100)
    variant: str | None = None
    description: str = Field(default="", max_length=1000)

    @field_validator("condition")
    @classmethod
    def _evaluable_in_memory(cls, condition: Condition | None) -> Condition | None:
        """Collectors decide rules in memory: behaviour, session counts and last seen need ClickHouse. A segment
        decides them there; the rule targets the segment (its membership reaches the collectors). The message
        names the first such condition's path ("conditions.1: …"), which the API appends to the field."""
        if condition is None:
            return condition
        outside = [(path, kind) for path, kind in kind_paths(condition) if kind not in TARGETING_KINDS]
        if outside:
            path, kind = outside[0]
            kinds = sorted({k for _, k in outside})
            reason = (
                f"a '{kind}' condition is decided in ClickHouse and cannot target a config (kinds {kinds} here); put it in a "
                f"segment and target the segment (kind 'segment'). Configs take {sorted(TARGETING_KINDS)}"
            )
            raise ValueError(f"{path}: {reason}" if path else reason)
        return condition


class Override(BaseModel):
    """One user gets one variant, whatever the rules say, until it expires. `ref` is a userId, an
    anonymousId or a person id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ref: str = Field(min_length=1, max_length=400)
    variant: str
    expires_at: datetime | None = None
    reason: str = Field(default="", max_length=1000)

    def active(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at


class ConfigSpec(BaseModel):
    """What an admin writes: the whole definition of one config."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(pattern=CONFIG_KEY_PATTERN)
    description: str = Field(default="", max_length=2000)
    type: ConfigType = "boolean"
    variants: list[Variant] = Field(default_factory=list, max_length=100)
    rules: list[Rule] = Field(default_factory=list, max_length=200)
    default: str | None = None  # variant key; boolean configs default to "false"
    enabled: bool = True
    salt: str = Field(default="", max_length=100)  # change it to reshuffle everyone
    overrides: list[Override] = Field(default_factory=list, max_length=10_000)

    @model_validator(mode="before")
    @classmethod
    def _boolean_shape(cls, data: Any) -> Any:
        """A boolean config has exactly the variants true and false; unless told otherwise a split rule
        serves true to everyone in its rollout, and the default is false."""
        if isinstance(data, dict) and data.get("type", "boolean") == "boolean":
            data = dict(data)
            if not data.get("variants"):
                data["variants"] = [{"key": "true", "value": True, "weight": 100}, {"key": "false", "value": False, "weight": 0}]
            if data.get("default") is None:
                data["default"] = "false"
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ConfigSpec:
        keys = [v.key for v in self.variants]
        if not keys:
            raise ValueError("variants: a config needs at least one variant")
        if len(set(keys)) != len(keys):
            raise ValueError("variants: variant keys must be unique")
        if self.type == "boolean":
            if sorted(keys) != ["false", "true"] or any(v.value is not (v.key == "true") for v in self.variants):
                raise ValueError("variants: a boolean config has exactly the variants 'true' (value true) and 'false' (value false)")
        elif self.type == "string" and any(v.value is not None and not isinstance(v.value, str) for v in self.variants):
            raise ValueError("variants: a string config's values are strings")
        if self.default is None:
            raise ValueError("default: name the variant served when no rule matches")
        if self.default not in keys:
            raise ValueError(f"default: '{self.default}' is not one of the variants {keys}")
        for index, rule in enumerate(self.rules):
            if rule.variant is not None and rule.variant not in keys:
                raise ValueError(f"rules[{index}].variant: '{rule.variant}' is not one of the variants {keys}")
            if rule.variant is None and not any(v.weight for v in self.variants):
                raise ValueError(f"rules[{index}]: without a fixed variant the rule splits by weight, and every weight is 0")
        refs = [o.ref for o in self.overrides]
        if len(set(refs)) != len(refs):
            raise ValueError("overrides: one override per ref")
        for override in self.overrides:
            if override.variant not in keys:
                raise ValueError(f"overrides[{override.ref}].variant: '{override.variant}' is not one of the variants {keys}")
        return self

    def references(self) -> list[tuple[str, str, str]]:
        """(field, "segment" or "list", id) for every segment and list the rules target."""
        return [
            found
            for index, rule in enumerate(self.rules)
            if rule.condition is not None
            for found in references(rule.condition, f"rules.{index}.condition")
        ]

    @property
    def default_variant(self) -> str:
        """The variant served when no rule matches (`_consistent` refuses a spec without one)."""
        if self.default is None:
            raise ValueError("default: name the variant served when no rule matches")
        return self.default

    @cached_property
    def overrides_by_ref(self) -> dict[str, Override]:
        """Overrides looked up by ref: a config may carry thousands, and every request asks."""
        return {o.ref: o for o in self.overrides}

    def value_of(self, variant: str) -> JsonValue:
        found = next(v for v in self.variants if v.key == variant)
        if self.type == "string" and found.value is None:
            return found.key
        return found.value

    def with_override(self, override: Override) -> ConfigSpec:
        kept = [o for o in self.overrides if o.ref != override.ref]
        return self.model_validate({**self.model_dump(), "overrides": [*(o.model_dump() for o in kept), override.model_dump()]})

    def without_override(self, ref: str) -> ConfigSpec:
        return self.model_copy(update={"overrides": [o for o in self.overrides if o.ref != ref]})


ChangeKind = Literal["created", "updated", "override_set", "override_removed", "deleted"]


class ConfigVersion(BaseModel):
    """One version of one config as the `configs` topic keeps it (key: the config key). Every change is a
    new record with the next version; none is ever rewritten, so the topic is the history. A deleted
    config's last version has `deleted` set and is no longer served."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    spec: ConfigSpec
    version: int = Field(ge=1)
    change: ChangeKind
    changed_at: datetime
    deleted: bool = False
    change_id: str = ""  # who wrote it: two writers racing for one version learn which record won

    @property
    def key(self) -> str:
        return self.spec.key

    @cached_property
    def compiled(self) -> CompiledConfig:
        return CompiledConfig(self)


class ConfigRegistry:
    """Every version of every config, replayed from the topic: the latest per key and the history. Records
    may arrive twice or out of order (a replay, a retried write); the highest version wins."""

    def __init__(self) -> None:
        self.history: dict[str, dict[int, ConfigVersion]] = {}
        self.latest: dict[str, ConfigVersion] = {}

    def apply(self, record: ConfigVersion) -> bool:
        """Keep the record; True when it became the latest version of its key. The first record of a
        version wins (a second writer of the same version lost the race; a redelivery is the same record)."""
        self.history.setdefault(record.key, {}).setdefault(record.version, record)
        current = self.latest.get(record.key)
        if current is None or current.version < record.version:
            self.latest[record.key] = record
            return True
        return False

    def live(self) -> list[ConfigVersion]:
        """The configs served now (latest versions not deleted), by key."""
        return sorted((v for v in self.latest.values() if not v.deleted), key=lambda v: v.key)

    def versions(self, key: str) -> list[ConfigVersion]:
        return [self.history[key][n] for n in sorted(self.history.get(key, {}))]

    def next_version(self, key: str) -> int:
        current = self.latest.get(key)
        return current.version + 1 if current else 1


# -- evaluation ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    """Who asks: the ids the caller sent, the person they resolve to and the properties rules read."""

    anonymous_id: str | None = None
    user_id: str | None = None
    person_id: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def bucketing_id(self) -> str:
        """The device's anonymousId when there is one, else the userId: a visitor keeps their variant on login."""
        return self.anonymous_id or self.user_id or ""

    @property
    def refs(self) -> set[str]:
        return {ref for ref in (self.user_id, self.anonymous_id, self.person_id) if ref}


@dataclass(frozen=True)
class Served:
    key: str
    variant: str
    value: Any
    version: int
    reason: Reason
    rule: int | None = None  # the rule's index for rule_match and rollout_excluded

    def answer(self) -> dict[str, Any]:
        return {"variant": self.variant, "value": self.value, "version": self.version, "reason": self.reason, "rule": self.rule}


def serve(config: ConfigVersion, subject: Subject, now: datetime | None = None) -> Served:
    """Which variant this subject gets, and why: disabled → override → the first rule whose condition holds
    and whose rollout includes the subject → the default (`rollout_excluded` when a rule's condition held
    but its rollout left the subject out). The definition is compiled once per version (`CompiledConfig`)."""
    return config.compiled.serve(subject, now or datetime.now(UTC))


class CompiledConfig:
    """One config version prepared for serving: matchers with their values parsed, the hash inputs' fixed
    parts encoded, cumulative weights summed and the answers that do not depend on the subject built."""

    __slots__ = (
        "key",
        "version",
        "enabled",
        "overrides",
        "rules",
        "rollout_prefix",
        "variant_prefix",
        "cumulative",
        "total",
        "answers",
        "default",
        "salt",
    )

    def __init__(self, config: ConfigVersion):
        spec = config.spec
        self.key, self.version, self.enabled, self.salt = spec.key, config.version, spec.enabled, spec.salt
        self.overrides = spec.overrides_by_ref
        self.rules = [
            (compile_condition(rule.condition) if rule.condition is not None else None, rule.rollout_percent / 100, rule.variant, index)
            for index, rule in enumerate(spec.rules)
        ]
        self.rollout_prefix = f"{spec.key}:{rollout_salt(spec.salt)}:".encode()
        self.variant_prefix = f"{spec.key}:{variant_salt(spec.salt)}:".encode()
        running, self.cumulative = 0, []
        for variant in spec.variants:
            running += variant.weight
            if variant.weight:
                self.cumulative.append((running, variant.key))
        self.total = running
        self.answers = {v.key: spec.value_of(v.key) for v in spec.variants}
        self.default = spec.default_variant

    def _bucket(self, prefix: bytes, bucketing_id: str) -> float:
        return (int.from_bytes(hashlib.sha256(prefix + bucketing_id.encode()).digest()[:8], "big") >> 11) / 9007199254740992.0

    def _split(self, bucketing_id: str) -> str:
        scaled = self._bucket(self.variant_prefix, bucketing_id) * self.total
        for cumulative, variant in self.cumulative:
            if scaled < cumulative:
                return variant
        return self.cumulative[-1][1]

    def _served(self, variant: str, reason: Reason, rule: int | None = None) -> Served:
        return Served(self.key, variant, self.answers[variant], self.version, reason, rule)

    def serve(self, subject: Subject, now: datetime) -> Served:
        if not self.enabled:
            return self._served(self.default, "disabled")
        if self.overrides:
            for ref in (subject.user_id, subject.anonymous_id, subject.person_id):
                override = self.overrides.get(ref) if ref else None
                if override is not None and override.active(now):
                    return self._served(override.variant, "override")
        bucketing_id = subject.anonymous_id or subject.user_id or ""
        properties = subject.properties
        excluded_by = None
        rollout_bucket = None
        for matcher, threshold, fixed, index in self.rules:
            if matcher is not None and not matcher(properties):
                continue
            if threshold < 1:
                if rollout_bucket is None:
                    rollout_bucket = self._bucket(self.rollout_prefix, bucketing_id)
                if not rollout_bucket < threshold:
                    excluded_by = index if excluded_by is None else excluded_by
                    continue
            return self._served(fixed or self._split(bucketing_id), "rule_match", index)
        if excluded_by is not None:
            return self._served(self.default, "rollout_excluded", excluded_by)
        return self._served(self.default, "default")


def serve_reference(config: ConfigVersion, subject: Subject, now: datetime) -> Served:
    """The evaluation as docs/configs.md states it, step by step (no preparation): `serve` is tested equal to it."""
    spec = config.spec

    def served(variant: str, reason: Reason, rule: int | None = None) -> Served:
        return Served(spec.key, variant, spec.value_of(variant), config.version, reason, rule)

    if not spec.enabled:
        return served(spec.default_variant, "disabled")
    for ref in (subject.user_id, subject.anonymous_id, subject.person_id):  # the userId's override first
        override = next((o for o in spec.overrides if o.ref == ref), None) if ref else None
        if override is not None and override.active(now):
            return served(override.variant, "override")
    bucketing_id = subject.bucketing_id
    excluded_by: int | None = None
    for index, rule in enumerate(spec.rules):
        if rule.condition is not None and not evaluate(rule.condition, subject.properties):
            continue
        if not in_rollout(spec.key, spec.salt, bucketing_id, rule.rollout_percent):
            excluded_by = excluded_by if excluded_by is not None else index
            continue
        return served(rule.variant or split(spec.variants, spec.key, spec.salt, bucketing_id), "rule_match", index)
    if excluded_by is not None:
        return served(spec.default_variant, "rollout_excluded", excluded_by)
    return served(spec.default_variant, "default")


# -- the serving request (SDK → collector) -------------------------------------------------------------


class ConfigRequest(BaseModel):
    """`POST /v1/configs` (or the GET form's query): who asks, properties that take precedence over the
    stored ones (they may not have reached the profile yet), and optionally which configs."""

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)

    anonymousId: Id | None = None
    userId: Id | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    keys: list[Annotated[str, Field(pattern=CONFIG_KEY_PATTERN)]] | None = Field(default=None, max_length=1000)

    @model_validator(mode="before")
    @classmethod
    def _integer_ids(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in ("anonymousId", "userId"):
                if type(data.get(name)) is float:
                    raise ValueError(f"{name}: {FLOAT_ID}")
        return data

    @model_validator(mode="after")
    def _someone(self) -> ConfigRequest:
        """Placeholders ("undefined", "null", ...) are no ids; at least one real id is needed to bucket."""
        anonymous = self.anonymousId if self.anonymousId and not is_illegal_id(self.anonymousId) else None
        user = self.userId if self.userId and not is_illegal_id(self.userId) else None
        if not (anonymous or user):
            raise ValueError("userId or anonymousId: one of them is required (and not a placeholder)")
        object.__setattr__(self, "anonymousId", anonymous)
        object.__setattr__(self, "userId", user)
        return self
