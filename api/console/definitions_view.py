"""Property definitions as the admin page shows and edits them. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TYPES = ("string", "number", "integer", "boolean", "datetime", "enum", "email", "phone", "url")
NUMBERS = ("minimum", "maximum")
LENGTHS = ("min_length", "max_length")


def constraints_text(definition: Mapping[str, Any]) -> str:
    """'required, unique, 1 ≤ value ≤ 100, length 3-8, matches ^[A-Z]+$, one of: free, pro'."""
    parts = [rule for rule in ("required", "unique") if definition.get(rule)]
    low, high = definition.get("minimum"), definition.get("maximum")
    if low is not None or high is not None:
        parts.append(f"{_n(low) + ' ≤ ' if low is not None else ''}value{' ≤ ' + _n(high) if high is not None else ''}")
    short, long = definition.get("min_length"), definition.get("max_length")
    if short is not None or long is not None:
        parts.append(f"length {short if short is not None else 0}-{long if long is not None else '∞'}")
    if definition.get("pattern"):
        parts.append(f"matches {definition['pattern']}")
    if definition.get("options"):
        parts.append("one of: " + ", ".join(definition["options"]))
    return ", ".join(parts)


def _n(value: Any) -> str:
    number = float(value)
    return str(int(number)) if number.is_integer() else str(number)


def definition_body(form: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The API's definition body from the admin form, and {field: error} for what could not be read."""
    errors: dict[str, str] = {}
    body: dict[str, Any] = {"type": (form.get("type") or "string").strip()}
    for key in ("label", "description", "pattern"):
        if value := (form.get(key) or "").strip():
            body[key] = value
    for key in ("required", "unique"):
        body[key] = (form.get(key) or "") in ("on", "true", "1")
    for key in NUMBERS:
        if text := (form.get(key) or "").strip():
            try:
                body[key] = float(text)
            except ValueError:
                errors[key] = f"{key} must be a number"
    for key in LENGTHS:
        if text := (form.get(key) or "").strip():
            if text.isdigit():
                body[key] = int(text)
            else:
                errors[key] = f"{key.replace('_', ' ')} must be a whole number"
    options = [o.strip() for line in (form.get("options") or "").splitlines() for o in line.split(",") if o.strip()]
    if options:
        body["options"] = options
    return body, errors


def form_values(definition: Mapping[str, Any]) -> dict[str, str]:
    """A definition as the edit form's values."""
    values = {k: "" if definition.get(k) is None else str(definition.get(k)) for k in ("name", "label", "description", "pattern", "type")}
    for key in (*NUMBERS, *LENGTHS):
        values[key] = "" if definition.get(key) is None else _n(definition[key])
    values["options"] = "\n".join(definition.get("options") or [])
    for key in ("required", "unique"):
        values[key] = "on" if definition.get(key) else ""
    return values
