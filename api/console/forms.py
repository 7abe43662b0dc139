"""Form fields from property definitions, and form posts to API bodies. Pure: no I/O.

A definition (schemas/properties.py, as GET /api/v1/property-definitions returns it) becomes an input with
the browser's own constraint attributes where they mean the same (required, min/max, lengths, type) and a
`data-pattern` for the RE2 pattern (unanchored, as the server reads it; console.js checks it). The server
checks everything again: its errors come back keyed by the API's field names and land at the same inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

IDENTIFIERS = ("user_id", "email", "phone", "customer_id")
DEFAULT_PROPERTIES = (
    "user_id",
    "email",
    "phone",
    "customer_id",
    "first_name",
    "last_name",
    "name",
    "company",
    "city",
    "country",
    "timezone",
)
DEFAULT_LABELS = {
    "user_id": "User id",
    "email": "Email",
    "phone": "Phone",
    "customer_id": "Customer id",
    "first_name": "First name",
    "last_name": "Last name",
    "name": "Name",
    "company": "Company",
    "city": "City",
    "country": "Country",
    "timezone": "Time zone",
}
INPUT_TYPES = {
    "email": "email",
    "url": "url",
    "number": "number",
    "integer": "number",
    "datetime": "datetime-local",
    "phone": "tel",
    "boolean": "checkbox",
}
PREFIX = "prop."  # input names: prop.<property>, so no property collides with the form's own fields


@dataclass(frozen=True)
class FieldSpec:
    name: str  # the property
    label: str
    type: str = "string"  # the definition's type
    identifier: bool = False
    required: bool = False
    custom: bool = False
    options: tuple[str, ...] = ()
    attributes: dict[str, str] = field(default_factory=dict)  # HTML constraint attributes, rendered as given
    help: str = ""

    @property
    def input_name(self) -> str:
        return PREFIX + self.name

    @property
    def input_type(self) -> str:
        return INPUT_TYPES.get(self.type, "text")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def field_spec(definition: Mapping[str, Any], custom: bool) -> FieldSpec:
    """The input for one definition: its constraints as attributes, and a sentence saying them."""
    name = str(definition["name"])
    kind = str(definition.get("type") or "string")
    attributes: dict[str, str] = {}
    rules: list[str] = []
    if kind in ("number", "integer"):
        attributes["step"] = "1" if kind == "integer" else "any"
    for key, attribute in (("minimum", "min"), ("maximum", "max")):
        if definition.get(key) is not None:
            attributes[attribute] = _number(definition[key])
            rules.append(f"{attribute} {attributes[attribute]}")
    for key, attribute in (("min_length", "minlength"), ("max_length", "maxlength")):
        if definition.get(key) is not None:
            attributes[attribute] = str(int(definition[key]))
            if key == "min_length" and int(definition[key]) > 0 or key == "max_length" and custom:
                rules.append(f"{key.replace('_', ' ')} {attributes[attribute]}")
    if definition.get("pattern"):
        attributes["data-pattern"] = str(definition["pattern"])
        rules.append(f"matches {definition['pattern']}")
    if definition.get("unique"):
        rules.append("unique")
    identifier = name in IDENTIFIERS
    return FieldSpec(
        name=name,
        label=str(definition.get("label") or DEFAULT_LABELS.get(name) or name),
        type=kind,
        identifier=identifier,
        required=bool(definition.get("required")),
        custom=custom,
        options=tuple(definition.get("options") or ()),
        attributes=attributes,
        help=", ".join(rules),
    )


def create_form_fields(definitions: list[Mapping[str, Any]]) -> list[FieldSpec]:
    """Default properties first (in their usual order, with their definitions' constraints), then custom ones."""
    by_name = {str(d["name"]): d for d in definitions if not d.get("deleted")}
    fields = [
        field_spec(by_name.get(name, {"name": name, "type": "email" if name == "email" else "string"}), custom=False)
        for name in DEFAULT_PROPERTIES
    ]
    custom = sorted(
        (d for name, d in by_name.items() if name not in DEFAULT_PROPERTIES and not d.get("built_in")), key=lambda d: str(d["name"])
    )
    return fields + [field_spec(d, custom=True) for d in custom]


def typed_value(spec: FieldSpec, text: str) -> tuple[Any, str | None]:
    """A form's text as the JSON value its type takes, or an error message. Empty text is no value (None)."""
    text = text.strip()
    if spec.type == "boolean":
        return text.lower() in ("on", "true", "1", "yes"), None
    if not text:
        return None, None
    if spec.type in ("number", "integer"):
        try:
            number = float(text)
        except ValueError:
            return None, f"{spec.label} must be a number"
        if not math.isfinite(number):
            return None, f"{spec.label} must be a finite number"
        if spec.type == "integer":
            if not number.is_integer():
                return None, f"{spec.label} must be a whole number"
            return int(number), None
        return number, None
    return text, None


def create_body(fields: list[FieldSpec], form: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """POST /api/v1/users's body from the Create User form, and {property: error} for what could not be read."""
    body: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for spec in fields:
        value, error = typed_value(spec, form.get(spec.input_name, ""))
        if error:
            errors[spec.name] = error
        elif value is None or (spec.type == "boolean" and not value and spec.input_name not in form):
            continue
        elif spec.custom:
            custom[spec.name] = value
        else:
            body[spec.name] = value
    if custom:
        body["properties"] = custom
    tags = [t.strip() for t in form.get("tags", "").split(",") if t.strip()]
    if tags:
        body["tags"] = tags
    if not any(body.get(name) for name in IDENTIFIERS) and not any(name in errors for name in IDENTIFIERS):
        errors["user_id"] = "give at least one identifier: user id, email, phone or customer id"
    return body, errors


def property_of_error_field(api_field: str) -> str:
    """The property an API error names: 'properties.plan', 'set.plan', 'update.set.plan' and 'plan' are all 'plan'."""
    for prefix in ("update.set.", "properties.", "set.", "unset."):
        if api_field.startswith(prefix):
            return api_field[len(prefix) :]
    return api_field
