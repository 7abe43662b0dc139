"""Email addresses a source asks the collector never to write (`Source.hash_emails`).

Each address is replaced by `sha256:<hex SHA-256 of the address, trimmed and lower-cased>`, without a
key: the same address gives the same hash in every source and every event, so it still links the same
person downstream (identify traits, ids), while the address itself never reaches Kafka. This is
pseudonymisation, not anonymisation: whoever holds a candidate address can hash it and compare.

On the raw topic (`mask_record`), structurally:
- `traits.email`, `context.traits.email` and `properties.email`: their string value, whatever it holds
  (the name says it is an address; an empty string is left empty);
- every other string value in `traits`, `context.traits` and `properties`, at any depth (in lists
  too), that is an email address as a whole (`local@domain.tld`; surrounding spaces are ignored). An
  address inside longer text ("write to a@b.example") or a URL is not recognised; keys are never changed;
- an id (messageId, anonymousId, userId, previousId, groupId) that is an email address, so the Kafka
  key never is one either.
A value that already is such a hash is left alone: replaying a masked event does not hash it twice.

On the dead-letter topic (`mask_kept`), a refused call is masked the same way, and then every
address-shaped piece of the kept text is replaced too (stricter, since a refused payload may be
anything: an unreadable body, a call too deep to walk). An address in a form the collector cannot read
(gzip, base64, `%40`) is kept as it arrived, and so is a body refused before its source is known (its
write key was only inside it).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from schemas.tracking import ID_FIELDS, MAX_NESTING_DEPTH

HASH_PREFIX = "sha256:"
MAX_ADDRESS_LENGTH = 254  # RFC 5321's limit on a path: longer text is not an address
PAYLOAD_FIELDS = ("properties", "traits")
RECORD_IDS = ("message_id", "anonymous_id", "user_id", "previous_id", "group_id")

# local@domain.tld and nothing around it: no space, and none of RFC 5322's specials unquoted in the local
# part (so "https://ann@example.com" is a URL, not an address); the domain's labels are letters, digits, "-".
_ADDRESS = re.compile(r'[^@\s()<>\[\]:;,\\"]+@[\w-]+(?:\.[\w-]+)+')
_HASHED = re.compile(r"sha256:[0-9a-f]{64}")
# In free text: starts where a run of address characters starts (the lookbehind), so a long run that
# holds no "@" is scanned once, not once per position; possessive runs never backtrack.
_ADDRESS_IN_TEXT = re.compile(r"(?<![\w.+-])[\w.+-]++@[\w-]++(?:\.[\w-]++)+")


def hash_email(address: str) -> str:
    return HASH_PREFIX + hashlib.sha256(address.strip().lower().encode("utf-8", "surrogatepass")).hexdigest()


def is_email(value: Any) -> bool:
    """Whether value is an email address as a whole (surrounding spaces aside)."""
    if not isinstance(value, str) or "@" not in value:
        return False
    bare = value.strip()
    return len(bare) <= MAX_ADDRESS_LENGTH and _ADDRESS.fullmatch(bare) is not None


def _masked(value: Any, depth: int = 1) -> Any:
    """value with every address in it hashed; a copy where anything below could change. Past the depth an
    event may have, nothing is walked: such an event is refused (and its bad row is masked as text)."""
    if isinstance(value, str):
        return hash_email(value) if is_email(value) else value
    if depth > MAX_NESTING_DEPTH:
        return value
    if isinstance(value, dict):
        return {key: _masked(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [_masked(item, depth + 1) for item in value]
    return value


def mask_payload(payload: Any) -> Any:
    """properties, traits or context.traits: its `email` hashed whatever it holds, other addresses where found."""
    if not isinstance(payload, dict):
        return payload
    masked = _masked(payload)
    email = masked.get("email")
    if isinstance(email, str) and email.strip() and not _HASHED.fullmatch(email.strip()):
        masked["email"] = hash_email(email)
    return masked


def _mask_object(event: dict[str, Any], ids: tuple[str, ...]) -> dict[str, Any]:
    masked = dict(event)
    for name in PAYLOAD_FIELDS:
        if name in masked:
            masked[name] = mask_payload(masked[name])
    context = masked.get("context")
    if isinstance(context, dict) and "traits" in context:
        masked["context"] = {**context, "traits": mask_payload(context["traits"])}
    for name in ids:
        if is_email(masked.get(name)):
            masked[name] = hash_email(masked[name])
    return masked


def mask_record(record: dict[str, Any]) -> dict[str, Any]:
    """A raw event's record (snake_case ids), masked; the input is not changed."""
    return _mask_object(record, RECORD_IDS)


def mask_text(text: str) -> str:
    """Every address-shaped piece of text, hashed."""
    return _ADDRESS_IN_TEXT.sub(lambda found: hash_email(found.group()), text) if "@" in text else text


def mask_kept(payload: Any) -> Any:
    """A payload for the dead-letter topic: a refused call (camelCase ids) masked as on the raw topic; text
    is masked by `mask_text` once written (see ingest.tracking.bad_row)."""
    return _mask_object(payload, ID_FIELDS) if isinstance(payload, dict) else payload
