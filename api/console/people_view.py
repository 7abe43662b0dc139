"""The People list's columns, filters and links. Pure: no I/O.

The list itself is GET /api/v1/users; this module turns the page's query string into that call's
parameters, says which columns exist and which can be sorted, and keeps a chosen column order valid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    sort: str | None = None  # the API's sort key, when the list can be sorted on it


COLUMNS: dict[str, Column] = {
    c.key: c
    for c in (
        Column("display_name", "Name", "name"),
        Column("email", "Email", "email"),
        Column("user_id", "User id"),
        Column("customer_id", "Customer id"),
        Column("first_name", "First name"),
        Column("last_name", "Last name"),
        Column("tags", "Tags"),
        Column("status", "Status"),
        Column("stage", "Stage"),
        Column("kind", "Kind"),
        Column("last_seen", "Last seen", "last_seen"),
        Column("first_seen", "First seen", "first_seen"),
        Column("event_count", "Events", "event_count"),
        Column("session_count", "Sessions", "session_count"),
        Column("visitor_number", "Visitor #", "visitor_number"),
        Column("phone", "Phone"),
        Column("company", "Company"),
        Column("city", "City"),
        Column("country", "Country"),
    )
}
DEFAULT_COLUMNS = ("display_name", "email", "user_id", "customer_id", "first_name", "last_name", "tags", "stage", "last_seen")
FILTERS = ("q", "status", "tag", "kind", "stage", "list", "segment")
KINDS = ("identified", "anonymous", "contact")
STATUSES = ("active", "disabled")
PROPERTY_FILTER_ROWS = 3  # f<i>.name / f<i>.value pairs on the page (any number in a URL up to the API's limit)
PAGE_SIZE = 50


def chosen_columns(saved: Any) -> list[str]:
    """A saved choice, cleaned: known columns, no repeats, at least one; the defaults when nothing valid was saved."""
    if not isinstance(saved, list):
        return list(DEFAULT_COLUMNS)
    columns = list(dict.fromkeys(c for c in saved if isinstance(c, str) and c in COLUMNS))
    return columns or list(DEFAULT_COLUMNS)


def move_column(columns: list[str], key: str, step: int) -> list[str]:
    """The order with `key` moved `step` places (clamped at the ends); unknown keys leave it unchanged."""
    if key not in columns:
        return list(columns)
    order = [c for c in columns if c != key]
    index = max(0, min(len(order), columns.index(key) + step))
    order.insert(index, key)
    return order


def property_filters(params: Mapping[str, str] | Any) -> dict[str, str]:
    """{property: value} from `f<i>.name`/`f<i>.value` pairs and `properties.<name>` parameters."""
    found: dict[str, str] = {}
    items = params.multi_items() if hasattr(params, "multi_items") else list(params.items())
    named = dict(items)
    for key, value in items:
        if key.startswith("properties.") and len(key) > len("properties."):
            found[key.removeprefix("properties.")] = value
        elif key.startswith("f") and key.endswith(".name") and value.strip():
            found[value.strip()] = named.get(key.removesuffix(".name") + ".value", "")
    return found


def api_filter(params: Mapping[str, str] | Any) -> dict[str, Any]:
    """The filter as POST /users/bulk takes it: q, status, tag, kind, stage, list, properties (empty ones left out)."""
    chosen: dict[str, Any] = {name: params.get(name).strip() for name in FILTERS if (params.get(name) or "").strip()}
    if properties := property_filters(params):
        chosen["properties"] = properties
    return chosen


def api_list_params(params: Mapping[str, str] | Any, limit: int = PAGE_SIZE) -> dict[str, Any]:
    """GET /api/v1/users's query parameters for the page's query string."""
    chosen = api_filter(params)
    query: dict[str, Any] = {k: v for k, v in chosen.items() if k != "properties"}
    query.update({f"properties.{name}": value for name, value in chosen.get("properties", {}).items()})
    query["sort"] = params.get("sort") or "-last_seen"
    query["limit"] = limit
    if params.get("cursor"):
        query["cursor"] = params.get("cursor")
    return query


def page_query(params: Mapping[str, str] | Any, **changes: Any) -> str:
    """This page's query string with some parameters changed (None removes one); for sort and paging links."""
    items = params.multi_items() if hasattr(params, "multi_items") else list(params.items())
    kept = [(k, v) for k, v in items if k not in changes]
    kept += [(k, v) for k, v in changes.items() if v is not None]
    return urlencode(kept)


def sort_link(params: Mapping[str, str] | Any, column: Column) -> str | None:
    """The query string that sorts by `column`: descending first, ascending when it already sorts descending."""
    if column.sort is None:
        return None
    current = params.get("sort") or "-last_seen"
    target = column.sort if current == f"-{column.sort}" else f"-{column.sort}"
    return page_query(params, sort=target, cursor=None)


def display_name(user: Mapping[str, Any]) -> str:
    """The name a person goes by: name, first + last, email, user id, else the visitor alias ("Visitor 451")."""
    properties = user.get("properties") or {}
    full = " ".join(p for p in (properties.get("first_name"), properties.get("last_name")) if isinstance(p, str) and p)
    for candidate in (user.get("name"), properties.get("name"), full, user.get("email"), user.get("user_id")):
        if isinstance(candidate, str) and candidate.strip():
            return candidate
    if user.get("visitor_alias"):
        return str(user["visitor_alias"])
    return f"Visitor {user.get('visitor_number', '?')}"


def kind_of(user: Mapping[str, Any]) -> str:
    if user.get("is_contact"):
        return "contact"
    return "identified" if user.get("is_identified") else "anonymous"


def cell(user: Mapping[str, Any], key: str) -> str:
    """One column's text for one person."""
    properties = user.get("properties") or {}
    if key == "display_name":
        return display_name(user)
    if key == "kind":
        return kind_of(user)
    if key == "tags":
        return ", ".join(user.get("tags") or [])
    if key in ("last_seen", "first_seen"):
        return short_time(user.get(key))
    value = user.get(key)
    if value in (None, ""):
        value = properties.get(key)
    return "" if value is None else str(value)


def short_time(value: Any) -> str:
    """'2026-11-30 10:24' from an ISO 8601 time (UTC), '' for none."""
    if not value:
        return ""
    if str(value).startswith("1970-01-01"):
        return "never"  # a profile made by the API that no tracking has touched yet
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return str(value)


DERIVED = (
    "email_domain",
    "is_free_email",
    "company_domain",
    "initial_referrer",
    "initial_referring_domain",
    "initial_utm_source",
    "initial_utm_medium",
    "initial_utm_campaign",
    "initial_utm_term",
    "initial_utm_content",
    "last_browser",
    "last_os",
    "last_device_type",
    "session_count",
    "event_count",
    "first_seen",
    "last_seen",
    "visitor_number",
)
NOT_PROPERTIES = {
    "person_id",
    "properties",
    "tags",
    "status",
    "distinct_ids",
    "visitor_alias",
    "is_identified",
    "is_contact",
    "user_id",
    "email",
    "name",
    "phone",
}


def property_groups(user: Mapping[str, Any], defaults: tuple[str, ...]) -> list[tuple[str, list[tuple[str, Any]]]]:
    """The Properties tab: default properties (all of them, to fill in), custom ones set, and derived ones."""
    properties = dict(user.get("properties") or {})
    default_rows = [(name, properties.get(name, user.get(name))) for name in defaults]
    custom_rows = sorted((k, v) for k, v in properties.items() if k not in defaults)
    derived_keys = [k for k in DERIVED if k in user] + sorted(
        k for k in user if k not in DERIVED and k not in NOT_PROPERTIES and k not in defaults
    )
    derived_rows = [(k, user[k]) for k in derived_keys if user[k] not in (None, "")]
    return [("Default", default_rows), ("Custom", custom_rows), ("Derived", derived_rows)]


def duration_text(seconds: Any) -> str:
    """'1h 02m', '4m 05s', '12s' from seconds."""
    try:
        total = int(round(float(seconds)))
    except (TypeError, ValueError):
        return ""
    hours, rest = divmod(max(total, 0), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def session_row(session: Mapping[str, Any]) -> dict[str, Any]:
    row = dict(session)
    row["duration_text"] = duration_text(session.get("duration_seconds"))
    row["utm_text"] = " / ".join(str(session[k]) for k in ("utm_source", "utm_medium", "utm_campaign") if session.get(k))
    row["device_text"] = " · ".join(str(session[k]) for k in ("device_type", "browser", "os") if session.get(k))
    return row
