"""Referrer, UTM and user-agent helpers, on the shapes Segment libraries really send."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas.attribution import (
    Touch,
    UserAgentInfo,
    campaign_from_context,
    campaign_from_url,
    describe_user_agent,
    page_url,
    referrer_of,
    referring_domain,
    touch_of,
    user_agent_of,
)
from schemas.events import RawEvent

NOW = datetime(2026, 3, 14, 10, 0, tzinfo=UTC)


def raw(**fields) -> RawEvent:
    return RawEvent(message_id="m1", type="page", anonymous_id="a", timestamp=NOW, received_at=NOW, source_id="web", **fields)


@pytest.mark.parametrize(
    ("referrer", "domain"),
    [
        ("https://www.google.com/search?q=shoes", "google.com"),
        ("https://WWW.Google.COM/", "google.com"),
        ("https://news.ycombinator.com/item?id=1", "news.ycombinator.com"),
        ("http://www2.example.org:8080/a", "www2.example.org"),
        ("android-app://com.google.android.gm/", "com.google.android.gm"),
        ("google.com/no-scheme", None),
        ("https://[broken/", None),
        ("", None),
        (None, None),
    ],
)
def test_referring_domain_is_the_host_without_www(referrer, domain):
    assert referring_domain(referrer) == domain


def test_context_campaign_maps_name_to_campaign_and_drops_non_text():
    campaign = {"name": "spring", "source": "newsletter", "medium": "email", "term": "", "content": 7, "id": "x"}
    assert campaign_from_context(campaign) == {"campaign": "spring", "source": "newsletter", "medium": "email"}
    assert campaign_from_context("utm_source=x") == {}
    assert campaign_from_context(None) == {}


def test_campaign_from_url_reads_utm_parameters_only():
    url = "https://shop.example/?utm_source=google&utm_medium=cpc&utm_campaign=brand%20terms&utm_term=&utm_id=9&utm_source=second&q=1"
    assert campaign_from_url(url) == {"source": "google", "medium": "cpc", "campaign": "brand terms"}
    assert campaign_from_url("https://shop.example/?utm_content=hero#utm_source=fragment") == {"content": "hero"}
    assert campaign_from_url(None) == {}


def test_page_url_prefers_properties_then_context_page():
    assert page_url(raw(properties={"url": "https://a.example/"}, context={"page": {"url": "https://b.example/"}})) == (
        "https://a.example/"
    )
    empty_property = raw(properties={"url": ""}, context={"page": {"url": "https://b.example/"}})
    assert page_url(empty_property) == "https://b.example/"
    assert page_url(raw(context={"page": "not a dict"})) is None


def test_referrer_prefers_context_page_then_properties():
    both = raw(properties={"referrer": "https://p.example/"}, context={"page": {"referrer": "https://c.example/"}})
    assert referrer_of(both) == "https://c.example/"
    assert referrer_of(raw(properties={"referrer": "https://p.example/"}, context={"page": {"referrer": ""}})) == ("https://p.example/")


def test_user_agent_prefers_the_event_then_context():
    assert user_agent_of(raw(user_agent="edge", context={"userAgent": "ctx"})) == "edge"
    assert user_agent_of(raw(context={"userAgent": "ctx"})) == "ctx"
    assert user_agent_of(raw(context={"userAgent": {"brands": []}})) is None


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 Safari/537.36",
            ("Chrome", "Windows", "desktop"),
        ),
        (
            "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
            ("Firefox", "Linux", "desktop"),
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/17.1 Mobile/15E148 Safari/604.1",
            ("Mobile Safari", "iOS", "mobile"),
        ),
        (
            "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 "
            "Mobile/15E148 Safari/604.1",
            ("Mobile Safari", "iOS", "tablet"),
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
            ("Chrome Mobile", "Android", "mobile"),
        ),
        (
            "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
            ("Chrome", "Android", "tablet"),
        ),
        (
            "Mozilla/5.0 (Linux; Android 9; KFMAWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/120 like Chrome/120 Safari/537.36",
            ("Android", "Android", "tablet"),
        ),
        ("Shop/5.2.0 CFNetwork/1474 Darwin/23.0.0", ("Shop", "iOS", "mobile")),
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", ("Googlebot", None, "bot")),
        (
            "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/120.0 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            ("Googlebot", "Android", "bot"),
        ),
        (
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; "
            "+http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
            ("bingbot", None, "bot"),
        ),
        ("curl/8.4.0", ("curl", None, "unknown")),
        ("", (None, None, "unknown")),
        (None, (None, None, "unknown")),
    ],
)
def test_user_agent_to_browser_os_and_device_type(user_agent, expected):
    assert describe_user_agent(user_agent) == UserAgentInfo(*expected)


def test_user_agent_parsing_is_cached():
    user_agent = "Mozilla/5.0 (X11; Linux x86_64; rv:122.0) Gecko/20100101 Firefox/122.0"
    describe_user_agent(user_agent)
    hits = describe_user_agent.cache_info().hits
    describe_user_agent(user_agent)
    assert describe_user_agent.cache_info().hits == hits + 1


def test_touch_of_an_event_gathers_first_touch_attributes():
    page = raw(
        properties={"url": "https://shop.example/?utm_source=url"},
        context={
            "page": {"referrer": "https://www.bing.com/"},
            "campaign": {"source": "ctx", "name": "launch"},
            "userAgent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        },
    )
    assert touch_of(page) == Touch(
        referrer="https://www.bing.com/",
        campaign={"source": "ctx", "campaign": "launch"},
        browser="Googlebot",
        os=None,
        device_type="bot",
    )
