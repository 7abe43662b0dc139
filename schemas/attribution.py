"""Where a visit came from and on what device: shared by the sessionizer and the profile projection,
so that a session and a profile describe a visit alike. Pure.

Helpers for the sessionizer: the page URL, the referrer and its domain, the UTM campaign and the
user agent as (browser, os, device_type). Browser and OS families are ua-parser's; the device type is
derived from ua-parser's families (see `device_type`), never from our own regexes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ua_parser import parse

from schemas.events import RawEvent

UTM_FIELDS = ("source", "medium", "campaign", "term", "content")
# Segment's context.campaign calls the campaign "name"; the other keys already match the UTM names.
_CONTEXT_CAMPAIGN_KEYS = {"source": "source", "medium": "medium", "name": "campaign", "term": "term", "content": "content"}

# ua-parser's OS families (uap-core regexes) that run on phones; tablets are told apart by device first.
_MOBILE_OS_FAMILIES = frozenset(
    {
        "iOS",
        "Android",
        "Windows Phone",
        "Windows Mobile",
        "BlackBerry OS",
        "KaiOS",
        "Firefox OS",
        "Symbian OS",
        "Symbian^3",
        "Symbian^3 Anna",
        "Symbian^3 Belle",
        "Nokia Series 40",
        "Nokia Series 30 Plus",
        "webOS",
    }
)
_DESKTOP_OS_FAMILIES = frozenset(
    {"Windows", "Mac OS X", "Mac OS", "Linux", "Chrome OS", "Debian", "Red Hat", "Gentoo", "FreeBSD", "Solaris"}
)
_TABLET_DEVICE_FAMILIES = frozenset({"iPad", "Generic Tablet"})


@dataclass(frozen=True)
class Touch:
    """The first-touch attributes of a session, taken from its earliest event."""

    referrer: str | None = None
    campaign: dict[str, str] = field(default_factory=dict)  # from context.campaign; {} lets the entry URL decide
    browser: str | None = None
    os: str | None = None
    device_type: str | None = None


@dataclass(frozen=True)
class UserAgentInfo:
    browser: str | None
    os: str | None
    device_type: str


def touch_of(event: RawEvent) -> Touch:
    user_agent = describe_user_agent(user_agent_of(event))
    return Touch(
        referrer=referrer_of(event),
        campaign=campaign_from_context(event.context.get("campaign")),
        browser=user_agent.browser,
        os=user_agent.os,
        device_type=user_agent.device_type,
    )


def _text(value: Any) -> str | None:
    """Payloads are client-controlled: only a non-empty string counts as a value."""
    return value if isinstance(value, str) and value else None


def _page_context(event: RawEvent) -> dict[str, Any]:
    page = event.context.get("page")
    return page if isinstance(page, dict) else {}


def page_url(event: RawEvent) -> str | None:
    """properties.url (what analytics.js page() sends), else context.page.url."""
    return _text(event.properties.get("url")) or _text(_page_context(event).get("url"))


def referrer_of(event: RawEvent) -> str | None:
    return _text(_page_context(event).get("referrer")) or _text(event.properties.get("referrer"))


def user_agent_of(event: RawEvent) -> str | None:
    return _text(event.user_agent) or _text(event.context.get("userAgent"))


def referring_domain(referrer: str | None) -> str | None:
    """The referrer's host, lower case, without a leading "www." (www.google.com and google.com are one source)."""
    if not referrer:
        return None
    try:
        host = urlsplit(referrer).hostname
    except ValueError:  # e.g. an unbalanced "[" in the netloc
        return None
    return host.removeprefix("www.") if host else None


def campaign_from_context(campaign: Any) -> dict[str, str]:
    """Segment's context.campaign {source, medium, name, term, content} as UTM fields."""
    if not isinstance(campaign, dict):
        return {}
    return {utm: value for key, utm in _CONTEXT_CAMPAIGN_KEYS.items() if (value := _text(campaign.get(key)))}


def campaign_from_url(url: str | None) -> dict[str, str]:
    """The utm_* query parameters of a URL as UTM fields (the first of a repeated parameter wins)."""
    if not url:
        return {}
    found: dict[str, str] = {}
    for key, value in parse_qsl(urlsplit(url).query):
        name = key.removeprefix("utm_")
        if key.startswith("utm_") and name in UTM_FIELDS and value:
            found.setdefault(name, value)
    return found


@lru_cache(maxsize=4096)
def describe_user_agent(user_agent: str | None) -> UserAgentInfo:
    """Browser and OS families from ua-parser, plus `device_type`. Cached: a site sees few distinct UA strings."""
    if not user_agent:
        return UserAgentInfo(browser=None, os=None, device_type="unknown")
    parsed = parse(user_agent)
    return UserAgentInfo(
        browser=parsed.user_agent.family if parsed.user_agent else None,
        os=parsed.os.family if parsed.os else None,
        device_type=device_type(
            device_family=parsed.device.family if parsed.device else None,
            device_brand=parsed.device.brand if parsed.device else None,
            os_family=parsed.os.family if parsed.os else None,
        ),
    )


def device_type(device_family: str | None, device_brand: str | None, os_family: str | None) -> str:
    """desktop, mobile, tablet, bot or unknown, from ua-parser's families, in this order:

    - bot: ua-parser's device family "Spider" (its crawler rules: Googlebot, bingbot, AhrefsBot, ...);
    - tablet: device family iPad, Kindle* or "Generic Tablet", or brand "Generic_Android_Tablet"
      (Android without the "Mobile" token);
    - mobile: a phone OS family (iOS, Android, Windows Phone, ...);
    - desktop: a desktop OS family (Windows, Mac OS X, Linux, Chrome OS, ...);
    - unknown: anything else (no user agent, curl, TVs, consoles).
    """
    if device_family == "Spider":
        return "bot"
    is_kindle = device_family is not None and device_family.startswith("Kindle")
    if device_family in _TABLET_DEVICE_FAMILIES or is_kindle or device_brand == "Generic_Android_Tablet":
        return "tablet"
    if os_family in _MOBILE_OS_FAMILIES:
        return "mobile"
    if os_family in _DESKTOP_OS_FAMILIES:
        return "desktop"
    return "unknown"
