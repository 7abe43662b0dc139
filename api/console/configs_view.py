"""Dynamic configs as the admin page shows and edits them: the form's flat fields ↔ the API's definition.
Pure: no I/O.

Variants and rules are rows (`variant_key_0`, `rule_rollout_1`, …); a row left blank is dropped, so the page
always offers a few empty rows to add to. A rule's condition is the segment language's JSON (schemas/conditions.py),
empty for everyone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

TYPES = ("boolean", "string", "json")
BLANK_VARIANTS = 2
BLANK_RULES = 1
VARIANT_FIELDS = ("key", "weight", "value", "description")
RULE_FIELDS = ("condition", "rollout", "variant", "description")


def _rows(form: Mapping[str, str], prefix: str, fields: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """The numbered rows of one kind, in index order, each with its fields' trimmed text."""
    indexes = sorted({int(m.group(1)) for name in form if (m := re.fullmatch(rf"{prefix}_[a-z]+_(\d+)", name))})
    rows = [(i, {f: str(form.get(f"{prefix}_{f}_{i}") or "").strip() for f in fields}) for i in indexes]
    return [(i, row) for i, row in rows if any(row.values())]


def _number(text: str, kind: type, field: str, errors: dict[str, str]) -> Any:
    try:
        return kind(text)
    except ValueError:
        errors[field] = f"“{text}” is not a {'whole ' if kind is int else ''}number"
        return None


def config_body(form: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str], list[int], list[int]]:
    """The API's definition from the form; {form field: error} for what could not be read; and which form row
    each variant and rule of the body came from (to put the API's errors, which count rows, at the right field)."""
    errors: dict[str, str] = {}
    config_type = (form.get("type") or "boolean").strip()
    body: dict[str, Any] = {"key": (form.get("key") or "").strip(), "type": config_type, "enabled": bool(form.get("enabled"))}
    for name in ("description", "default", "salt"):
        if value := (form.get(name) or "").strip():
            body[name] = value
    variants, variant_rows = [], []
    if config_type != "boolean":  # a boolean config's variants are fixed: true and false
        for i, row in _rows(form, "variant", VARIANT_FIELDS):
            variant: dict[str, Any] = {"key": row["key"], "weight": 0}
            if row["weight"]:
                variant["weight"] = _number(row["weight"], int, f"variant_weight_{i}", errors)
            if row["value"]:
                if config_type == "json":
                    try:
                        variant["value"] = orjson.loads(row["value"])
                    except orjson.JSONDecodeError as exc:
                        errors[f"variant_value_{i}"] = f"not JSON: {exc}"
                else:
                    variant["value"] = row["value"]
            if row["description"]:
                variant["description"] = row["description"]
            variants.append(variant)
            variant_rows.append(i)
        body["variants"] = variants
    rules, rule_rows = [], []
    for i, row in _rows(form, "rule", RULE_FIELDS):
        rule: dict[str, Any] = {"rollout_percent": 100.0}
        if row["condition"]:
            try:
                rule["condition"] = orjson.loads(row["condition"])
            except orjson.JSONDecodeError as exc:
                errors[f"rule_condition_{i}"] = f"not JSON: {exc}"
        if row["rollout"]:
            rule["rollout_percent"] = _number(row["rollout"], float, f"rule_rollout_{i}", errors)
        if row["variant"]:
            rule["variant"] = row["variant"]
        if row["description"]:
            rule["description"] = row["description"]
        rules.append(rule)
        rule_rows.append(i)
    body["rules"] = rules
    return body, errors, variant_rows, rule_rows


_API_FIELD = re.compile(r"^(variants|rules)(?:\.(\d+)|\[(\d+)\])(?:\.([a-z_]+))?")
_FORM_FIELD = {"rollout_percent": "rollout"}


def form_field_of(api_field: str, variant_rows: list[int], rule_rows: list[int]) -> str:
    """The form field an API error names: `rules.1.rollout_percent` or `rules[1].variant` → `rule_rollout_<row>`,
    `variants.0.key` → `variant_key_<row>`; a top-level field keeps its name."""
    match = _API_FIELD.match(api_field)
    if not match:
        return api_field.split(".")[0]
    kind, index = match.group(1), int(match.group(2) or match.group(3))
    rows, fields, prefix = (variant_rows, VARIANT_FIELDS, "variant") if kind == "variants" else (rule_rows, RULE_FIELDS, "rule")
    if index >= len(rows):
        return kind
    field = _FORM_FIELD.get(match.group(4) or "", match.group(4) or "")
    field = field if field in fields else ("variant" if kind == "rules" else "key")
    return f"{prefix}_{field}_{rows[index]}"


def form_values(config: Mapping[str, Any]) -> dict[str, str]:
    """The form's fields for an existing config (and its blank rows)."""
    values = {
        "key": config["key"],
        "description": config.get("description") or "",
        "type": config.get("type", "boolean"),
        "default": config.get("default") or "",
        "salt": config.get("salt") or "",
        "enabled": "on" if config.get("enabled", True) else "",
    }
    variants = [] if values["type"] == "boolean" else list(config.get("variants") or [])
    for i, variant in enumerate(variants):
        value = variant.get("value")
        shown = "" if value is None else (orjson.dumps(value).decode() if values["type"] == "json" else str(value))
        values |= {
            f"variant_key_{i}": variant["key"],
            f"variant_weight_{i}": str(variant.get("weight", 0)),
            f"variant_value_{i}": shown,
            f"variant_description_{i}": variant.get("description") or "",
        }
    for i, rule in enumerate(config.get("rules") or []):
        condition = rule.get("condition")
        values |= {
            f"rule_condition_{i}": orjson.dumps(condition).decode() if condition else "",
            f"rule_rollout_{i}": _percent(rule.get("rollout_percent", 100)),
            f"rule_variant_{i}": rule.get("variant") or "",
            f"rule_description_{i}": rule.get("description") or "",
        }
    return values


def row_counts(values: Mapping[str, str]) -> tuple[int, int]:
    """How many variant and rule rows the form shows: every filled one, plus blank ones to add with."""

    def highest(prefix: str) -> int:
        found = [int(m.group(1)) for name in values if (m := re.fullmatch(rf"{prefix}_[a-z]+_(\d+)", name))]
        return max(found, default=-1) + 1

    return highest("variant") + BLANK_VARIANTS, highest("rule") + BLANK_RULES


def _percent(value: Any) -> str:
    number = float(value)
    return str(int(number)) if number.is_integer() else str(number)


def rules_text(config: Mapping[str, Any]) -> list[str]:
    """Each rule in a line: 'plan equals pro → 50% get pro', 'everyone → 100% split by weight'."""
    lines = []
    for rule in config.get("rules") or []:
        who = condition_text(rule["condition"]) if rule.get("condition") else "everyone"
        what = f"get {rule['variant']}" if rule.get("variant") else "split by weight"
        lines.append(f"{who} → {_percent(rule.get('rollout_percent', 100))}% {what}")
    return lines


def condition_text(condition: Mapping[str, Any]) -> str:
    """A condition in words, compactly (the JSON is the exact form)."""
    kind = condition.get("kind")
    if kind == "group":
        joiner = " and " if condition.get("match", "all") == "all" else " or "
        return "(" + joiner.join(condition_text(c) for c in condition.get("conditions") or []) + ")"
    if kind == "property":
        value = condition.get("value")
        shown = "" if value is None else f" {orjson.dumps(value).decode()}"
        return f"{condition.get('property')} {str(condition.get('operator', '')).replace('_', ' ')}{shown}"
    negated = condition.get("operator") in ("has_not", "not_in")
    if kind in ("tag", "list", "segment"):
        what = {"tag": "tagged", "list": "in list", "segment": "in segment"}[kind]
        return f"{'not ' if negated else ''}{what} {condition.get(kind if kind == 'tag' else f'{kind}_id')}"
    if kind == "stage":
        stages = ", ".join(stage or "(no stage)" for stage in condition.get("stages") or [])
        return f"stage {'not ' if negated else ''}in {stages}"
    if kind == "status":
        return f"status {condition.get('status')}"
    if kind == "identity":
        return {"not_contact": "not a contact"}.get(str(condition.get("identity")), str(condition.get("identity")))
    return orjson.dumps(condition).decode()


def variants_text(config: Mapping[str, Any]) -> str:
    """'classic 50, compact 50' (weights are relative shares in a split)."""
    return ", ".join(f"{v['key']} {v.get('weight', 0)}" for v in config.get("variants") or [])
