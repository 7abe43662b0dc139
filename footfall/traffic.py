"""A seeded model of a website's visitors, as the Segment calls their browsers would send. Pure: no I/O.

`calls(seed, ...)` yields Segment HTTP API call dicts (camelCase, as analytics.js sends them), the same
ones for the same seed and parameters, byte for byte. `footfall loadgen` sends them; benchmarks compare
what the pipeline shows with `Summary` (what was generated: counts per type, devices, users, sessions).

The simulation, in simulated event time (it starts at `start`, default 2025-01-01T00:00Z):
- `visitors` people; person i (by rank) has an activity proportional to 1 / (i+1) ** `skew` (Zipf-like),
  so a few visitors are very hot: their sessions are longer, they click faster and come back sooner
  (with 10,000 visitors the hottest device sends about 1.5% of all calls and the top 1% of devices a
  quarter of them; the median device sends 5 calls in 60,000).
- A device lives in sessions. Inside a session calls are seconds to minutes apart, with the odd pause
  of 5-29 minutes (still the same session); between sessions at least 31 minutes pass (a new session
  by the pipeline's 30-minute rule), so `Summary.sessions` is exactly what the sessionizer should find.
- A session lands from a source (direct, search, social, e-mail and paid campaigns: a referrer and UTM
  tags in the URL and `context.campaign`), then views pages (`context.page`) and sends `track` events
  with properties (products, cart, checkout, orders, clicks, videos).
- About a third of visitors sign up part-way through their life (session 1-3): sometimes an `alias`
  (previousId = the anonymousId), an `identify` with traits (email, name, plan), then `Signed Up`.
  Later calls of that device carry the userId. Some then get a second device (a new anonymousId)
  that browses anonymously, signs in a session or two later and identifies with the same userId.
- Calls come out in event-time order across all devices (a heap holds each device's next call), so each
  device's timestamps never decrease and devices interleave, as they would reach a collector.

Every call carries `timestamp` (simulated event time), `sentAt` (simulated flush time, a few
milliseconds later) and a `messageId` derived from the seed and the call's number.

Time is compressed by how fast the calls are sent: 10,000 visitors make about 5,000 calls per simulated
hour, so at 2,000 calls/s a 30-second run spans about 11 hours of visitor time (fewer visitors: longer).
Memory grows with the number of visitors seen (one generator per device).
"""

from __future__ import annotations

import heapq
import math
import random
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from itertools import accumulate, islice
from typing import Any

DEFAULT_START = datetime(2025, 1, 1, tzinfo=UTC)
SESSION_GAP_MS = 30 * 60 * 1000  # the pipeline's default (FOOTFALL_SESSION_GAP_SECONDS)
MESSAGE_NAMESPACE = uuid.UUID("5b6f1c52-3c1e-4d8e-9a51-7d1f8f0e2a10")

SITE = "https://shop.example.com"
LIBRARY = {"name": "analytics.js", "version": "npm:next-1.70.0"}

SECOND, MINUTE, HOUR = 1000, 60 * 1000, 3600 * 1000
RETURN_GAP_MIN_MS = 31 * MINUTE  # the shortest gap between two sessions of a device
BASE_RETURN_MS = 8 * HOUR  # mean gap between sessions for an average visitor (hot ones come back sooner)
PAUSE_CHANCE = 0.06  # a 5-29 minute pause inside a session
SIGN_UP_CHANCE = 0.35
ALIAS_CHANCE = 0.3  # of sign-ups
SECOND_DEVICE_CHANCE = 0.35  # per later session of a signed-up person, until they have one
REIDENTIFY_CHANCE = 0.05  # per session of an identified device: traits change (plan upgrade)

DESKTOP_USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36",
)
MOBILE_USER_AGENTS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
)
LOCALES = (
    ("en-US", "America/New_York"),
    ("en-US", "America/Los_Angeles"),
    ("en-GB", "Europe/London"),
    ("de-DE", "Europe/Berlin"),
    ("fr-FR", "Europe/Paris"),
    ("es-ES", "Europe/Madrid"),
    ("pt-BR", "America/Sao_Paulo"),
    ("ja-JP", "Asia/Tokyo"),
)

# Where a session comes from: (weight, referrer, campaign as context.campaign names it, or None).
SOURCES: tuple[tuple[int, str, dict[str, str] | None], ...] = (
    (28, "", None),  # direct
    (22, "https://www.google.com/", None),
    (4, "https://www.bing.com/", None),
    (3, "https://duckduckgo.com/", None),
    (9, "", {"source": "newsletter", "medium": "email", "name": "spring_sale", "content": "hero_button"}),
    (9, "https://www.google.com/", {"source": "google", "medium": "cpc", "name": "brand_search", "term": "trail shoes"}),
    (7, "https://l.facebook.com/", {"source": "facebook", "medium": "paid_social", "name": "retargeting_q1", "content": "carousel"}),
    (5, "https://t.co/", None),
    (4, "https://www.linkedin.com/", {"source": "linkedin", "medium": "social", "name": "launch_week"}),
    (5, "https://news.ycombinator.com/", None),
    (4, "https://www.reddit.com/r/running/", None),
)
UTM_PARAMS = (
    ("source", "utm_source"),
    ("medium", "utm_medium"),
    ("name", "utm_campaign"),
    ("term", "utm_term"),
    ("content", "utm_content"),
)

PRODUCTS = (  # (sku, name, category, price)
    ("sku-1001", "Trail Runner 3", "Shoes", 129.0),
    ("sku-1002", "Road Racer", "Shoes", 149.0),
    ("sku-1003", "Merino Tee", "Apparel", 59.0),
    ("sku-1004", "Wind Shell", "Apparel", 119.0),
    ("sku-1005", "Running Vest 12L", "Gear", 99.0),
    ("sku-1006", "Headlamp 400", "Gear", 45.0),
    ("sku-1007", "Trail Socks (3 pack)", "Apparel", 24.0),
    ("sku-1008", "Soft Flask 500ml", "Gear", 29.0),
    ("sku-1009", "Recovery Slides", "Shoes", 49.0),
    ("sku-1010", "GPS Watch S2", "Electronics", 299.0),
)
COLLECTIONS = ("shoes", "apparel", "gear", "electronics", "sale", "new-arrivals")
POSTS = ("how-to-choose-trail-shoes", "ultra-training-plan", "spring-sale-2025", "headlamp-buying-guide", "our-story")
SEARCHES = ("trail shoes", "rain jacket", "headlamp", "socks", "gps watch", "vest")
BUTTONS = (
    ("Add to wishlist", "product"),
    ("Size guide", "product"),
    ("Subscribe", "footer"),
    ("Chat with us", "header"),
    ("Apply coupon", "cart"),
    ("Load more", "collection"),
)
VIDEOS = (("vid-101", "Trail Runner 3 review", 184), ("vid-102", "How we test", 312), ("vid-103", "Spring collection", 95))
FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Dennis", "Radia", "Linus")
LAST_NAMES = (
    "Lovelace",
    "Hopper",
    "Turing",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Allen",
    "Thompson",
    "Hamilton",
    "Ritchie",
    "Perlman",
    "Torvalds",
)
FREE_EMAIL_DOMAINS = frozenset({"gmail.com", "outlook.com", "yahoo.com", "icloud.com", "proton.me"})
EMAIL_DOMAINS = (
    "gmail.com",
    "gmail.com",
    "outlook.com",
    "yahoo.com",
    "icloud.com",
    "proton.me",
    "acme-corp.com",
    "initech.io",
    "globex.com",
    "hooli.xyz",
)
PLANS = ("free", "free", "plus", "pro")

# What a visitor does next inside a session (after landing): (weight, action).
ACTIONS = (
    (48, "page"),
    (12, "Product Viewed"),
    (6, "Product Added"),
    (5, "Products Searched"),
    (9, "Button Clicked"),
    (4, "Video Played"),
    (3, "Checkout Started"),
    (2, "Order Completed"),
    (1, "Product Removed"),
)
SOURCE_WEIGHTS = list(accumulate(s[0] for s in SOURCES))
ACTION_WEIGHTS = list(accumulate(a[0] for a in ACTIONS))


def iso(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 with milliseconds and Z, as analytics.js writes them."""
    seconds, millis = divmod(ms, 1000)
    return f"{_iso_second(seconds)}.{millis:03d}Z"


@lru_cache(maxsize=65_536)
def _iso_second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def parse_iso(value: str) -> int:
    return round(datetime.fromisoformat(value).timestamp() * 1000)


@dataclass
class Summary:
    """What a stream of calls holds: computed from the calls alone, so a file or a sent run can be summarized too.

    `sessions` counts sessions the pipeline should find: per device (anonymousId, else userId), a new one
    whenever two consecutive calls are >= 30 minutes apart (calls taken in the order given)."""

    calls: int = 0
    by_type: Counter = field(default_factory=Counter)
    track_events: Counter = field(default_factory=Counter)
    sessions: int = 0
    first_timestamp: str | None = None
    last_timestamp: str | None = None
    _last_ms: dict[str, int] = field(default_factory=dict, repr=False)
    _users: set[str] = field(default_factory=set, repr=False)
    _min_ms: int | None = field(default=None, repr=False)
    _max_ms: int | None = field(default=None, repr=False)

    def add(self, call: dict[str, Any], ms: int | None = None) -> None:
        """Count `call`; `ms` is its timestamp in epoch milliseconds when the caller knows it already."""
        self.calls += 1
        self.by_type[call["type"]] += 1
        if call["type"] == "track":
            self.track_events[call["event"]] += 1
        if user_id := call.get("userId"):
            self._users.add(user_id)
        if stamp := call.get("timestamp"):
            ms = parse_iso(stamp) if ms is None else ms
            device = call.get("anonymousId") or call.get("userId") or ""
            previous = self._last_ms.get(device)
            if previous is None or ms - previous >= SESSION_GAP_MS:
                self.sessions += 1
            self._last_ms[device] = ms
            if self._min_ms is None or ms < self._min_ms:
                self._min_ms, self.first_timestamp = ms, stamp
            if self._max_ms is None or ms > self._max_ms:
                self._max_ms, self.last_timestamp = ms, stamp

    @property
    def devices(self) -> int:
        return len(self._last_ms)

    @property
    def users(self) -> int:
        return len(self._users)

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "by_type": dict(sorted(self.by_type.items())),
            "track_events": dict(self.track_events.most_common()),
            "devices": self.devices,
            "users": self.users,
            "sessions": self.sessions,
            "first_timestamp": self.first_timestamp,
            "last_timestamp": self.last_timestamp,
        }


def summarize(calls: Iterable[dict[str, Any]]) -> Summary:
    summary = Summary()
    for call in calls:
        summary.add(call)
    return summary


class _Person:
    __slots__ = ("activity", "session_mean", "return_mean_ms", "pace", "signs_up", "sign_up_session", "user_id", "traits", "devices")

    def __init__(self, activity: float, rng: random.Random):
        self.activity = activity
        self.session_mean = min(400.0, 2.0 + 4.0 * math.sqrt(activity))  # calls per session
        self.return_mean_ms = BASE_RETURN_MS / math.sqrt(activity)
        self.pace = min(1.0, activity**-0.4)  # hot visitors also click faster inside a session
        self.signs_up = rng.random() < SIGN_UP_CHANCE
        self.sign_up_session = rng.randint(1, 3)
        self.user_id: str | None = None
        self.traits: dict[str, Any] = {}
        self.devices: list[_Device] = []


class _Device:
    __slots__ = ("person", "mobile", "anonymous_id", "user_agent", "locale", "timezone", "identified", "life", "sessions")

    def __init__(self, person: _Person, rng: random.Random, mobile: bool):
        self.person = person
        self.mobile = mobile
        self.anonymous_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        self.user_agent = rng.choice(MOBILE_USER_AGENTS if mobile else DESKTOP_USER_AGENTS)
        self.locale, self.timezone = rng.choice(LOCALES)
        self.identified = False  # has this device sent the person's userId yet
        self.life: Iterator[int] | None = None
        self.sessions = 0


class _Page:
    """The page a device is on: what page views send as properties and every call as `context.page`."""

    __slots__ = ("name", "path", "search", "title", "url", "referrer", "campaign", "product")

    def __init__(
        self,
        name: str,
        path: str,
        title: str,
        site: str,
        referrer: str,
        search: str = "",
        campaign: dict[str, str] | None = None,
        product: tuple | None = None,
    ):
        self.name, self.path, self.title, self.search = name, path, title, search
        self.url = f"{site}{path}{search}"
        self.referrer = referrer
        self.campaign = campaign
        self.product = product

    def context(self) -> dict[str, str]:
        return {"path": self.path, "referrer": self.referrer, "search": self.search, "title": self.title, "url": self.url}


class Traffic:
    """The simulation; iterate it (once) for calls. `summary` covers the calls yielded so far; `sessions`
    counts the sessions the model started (it equals `summary.sessions` once those calls are out)."""

    def __init__(self, seed: int, *, visitors: int = 10_000, skew: float = 1.0, start: datetime = DEFAULT_START, site: str = SITE):
        if visitors < 1:
            raise ValueError("visitors must be at least 1")
        if skew < 0:
            raise ValueError("skew must not be negative")
        if start.tzinfo is None:
            raise ValueError("start must carry a time zone")
        self.seed = seed
        self.visitors = visitors
        self.skew = skew
        self.start_ms = round(start.timestamp() * 1000)
        self.site = site.rstrip("/")
        self.rng = random.Random(seed)
        self.summary = Summary()
        self.sessions = 0
        self._built = 0
        self._out: dict[str, Any] | None = None
        self._out_ms = 0
        # messageIds: UUID-shaped, the seed's prefix and the call's number (unique per seed, cheap to make)
        self._id_prefix = uuid.uuid5(MESSAGE_NAMESPACE, str(seed)).hex[:20]
        self._heap: list[tuple[int, int, Any]] = []
        self._seq = 0
        weights = [1.0 / (rank + 1) ** skew for rank in range(visitors)]
        mean = sum(weights) / visitors
        self._activity = [w / mean for w in weights]
        self._started = False

    # -- the scheduler: every device's next call on one heap, earliest first --------------------------------

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self._started:
            raise RuntimeError("a Traffic is iterated once; make a new one (same seed: same calls)")
        self._started = True
        rng = self.rng
        for index, activity in enumerate(self._activity):  # each visitor's first visit
            self._push(self.start_ms + round(rng.expovariate(1.0) * BASE_RETURN_MS / math.sqrt(activity)), index)
        while self._heap:
            at, _, who = heapq.heappop(self._heap)
            if isinstance(who, int):  # a visitor's first visit: the person and their first device are born
                who = self._device(_Person(self._activity[who], rng), mobile=rng.random() < 0.4)
            if who.life is None:
                who.life = self._life(who, at)
            next_at = next(who.life)  # builds the call due now into self._out; answers when the next one is due
            call, self._out = self._out, None
            self._push(next_at, who)
            self.summary.add(call, self._out_ms)
            yield call

    def _push(self, at: int, who: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, who))

    def _device(self, person: _Person, mobile: bool) -> _Device:
        device = _Device(person, self.rng, mobile)
        person.devices.append(device)
        return device

    # -- one device's life ----------------------------------------------------------------------------------
    # A generator per device: it builds the call due at `t` into self._out, then yields when its next call
    # is due, and so on forever. Sub-flows (sign-up, sign-in) build several calls a few moments apart.

    def _life(self, device: _Device, t: int) -> Iterator[int]:
        rng = self.rng
        person = device.person
        while True:
            device.sessions += 1
            self.sessions += 1
            length = 1 + self._geometric(person.session_mean - 1)
            first_device = device is person.devices[0]
            sign_up_at = sign_in_at = None
            if first_device and person.signs_up and person.user_id is None and device.sessions >= person.sign_up_session:
                length = max(length, 3)
                sign_up_at = rng.randint(1, length - 1)
            elif not first_device and person.user_id and not device.identified and (device.sessions >= 3 or rng.random() < 0.5):
                length = max(length, 3)
                sign_in_at = rng.randint(1, length - 1)
            if first_device and person.user_id and len(person.devices) == 1 and rng.random() < SECOND_DEVICE_CHANCE:
                second = self._device(person, mobile=not device.mobile if rng.random() < 0.8 else device.mobile)
                self._push(t + RETURN_GAP_MIN_MS + round(rng.expovariate(1.0) * 6 * HOUR), second)

            _, referrer, campaign = rng.choices(SOURCES, cum_weights=SOURCE_WEIGHTS)[0]
            page = self._landing(referrer, campaign)
            cart: list[tuple] = []
            for step in range(length):
                if step == 0:
                    self._out = self._page_view(device, t, page)
                    if device.identified and rng.random() < REIDENTIFY_CHANCE:  # traits changed since: an upgrade
                        t += rng.randint(200, 3000)
                        yield t
                        person.traits = {**person.traits, "plan": "pro"}
                        self._out = self._call(device, t, "identify", page, traits=dict(person.traits))
                elif step == sign_up_at:
                    page = self._page(page.url, "Sign Up", "/signup", "Create your account")
                    self._out = self._page_view(device, t, page)
                    t = yield from self._sign_up(device, t, page)
                elif step == sign_in_at:
                    page = self._page(page.url, "Sign In", "/login", "Sign in")
                    self._out = self._page_view(device, t, page)
                    t = yield from self._sign_in(device, t, page)
                else:
                    action = rng.choices(ACTIONS, cum_weights=ACTION_WEIGHTS)[0][1]
                    if action == "page":
                        page = self._next_page(page.url)
                        self._out = self._page_view(device, t, page)
                    else:
                        self._out = self._track(device, t, page, action, cart)
                if step < length - 1:
                    t += self._gap_in_session(person.pace)
                else:  # the session ends: back in 31 minutes at the earliest (hot visitors sooner than cold ones)
                    t += RETURN_GAP_MIN_MS + round(rng.expovariate(1.0) * person.return_mean_ms)
                yield t

    def _sign_up(self, device: _Device, t: int, page: _Page) -> Iterator[int]:
        """The first device signs up: sometimes an alias (anonymousId → new userId), then identify and `Signed Up`."""
        rng = self.rng
        person = device.person
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        domain = rng.choice(EMAIL_DOMAINS)
        user_id = f"usr_{rng.getrandbits(48):012x}"
        plan = rng.choice(PLANS)
        t += rng.randint(8, 90) * SECOND  # filling in the form
        if rng.random() < ALIAS_CHANCE:  # the site links the anonymous id to the new user id explicitly
            yield t
            self._out = self._call(device, t, "alias", page, userId=user_id, previousId=device.anonymous_id)
            t += rng.randint(5, 50)
        yield t
        person.user_id = user_id
        person.traits = {
            "email": f"{first}.{last}{rng.randint(1, 999)}@{domain}".lower(),
            "firstName": first,
            "lastName": last,
            "name": f"{first} {last}",
            "plan": plan,
            "createdAt": iso(t),
        }
        if domain not in FREE_EMAIL_DOMAINS:
            person.traits["company"] = {"name": domain.split(".")[0].replace("-", " ").title()}
        device.identified = True
        self._out = self._call(device, t, "identify", page, traits=dict(person.traits))
        t += rng.randint(5, 50)
        yield t
        method = rng.choice(("email", "google", "github"))
        self._out = self._call(device, t, "track", page, event="Signed Up", properties={"method": method, "plan": plan})
        return t

    def _sign_in(self, device: _Device, t: int, page: _Page) -> Iterator[int]:
        """A second device logs in: it identifies with the person's userId (the pipeline merges the devices)."""
        rng = self.rng
        person = device.person
        t += rng.randint(5, 40) * SECOND
        yield t
        device.identified = True
        self._out = self._call(device, t, "identify", page, traits={"email": person.traits["email"]})
        t += rng.randint(5, 50)
        yield t
        self._out = self._call(
            device, t, "track", page, event="Signed In", properties={"method": rng.choice(("email", "google", "github"))}
        )
        return t

    # -- pacing ---------------------------------------------------------------------------------------------

    def _geometric(self, mean: float) -> int:
        """A geometric count >= 0 with the given mean."""
        if mean <= 0:
            return 0
        p = 1.0 / (mean + 1.0)
        return int(math.log(1.0 - self.rng.random()) / math.log(1.0 - p))

    def _gap_in_session(self, pace: float) -> int:
        """Seconds to minutes between calls of a session (`pace` < 1: faster), now and then a 5-29 minute
        pause: always < 30 minutes."""
        rng = self.rng
        if rng.random() < PAUSE_CHANCE * pace:
            return rng.randint(5 * MINUTE, 29 * MINUTE)
        return min(29 * MINUTE, 2 * SECOND + round(rng.expovariate(1.0) * 35 * SECOND * pace))

    # -- pages ----------------------------------------------------------------------------------------------

    def _page(
        self,
        referrer: str,
        name: str,
        path: str,
        title: str,
        search: str = "",
        campaign: dict[str, str] | None = None,
        product: tuple | None = None,
    ) -> _Page:
        return _Page(name, path, f"{title} – Trailhead Shop", self.site, referrer, search, campaign, product)

    def _landing(self, referrer: str, campaign: dict[str, str] | None) -> _Page:
        rng = self.rng
        search = ""
        if campaign:
            search = "?" + "&".join(f"{param}={campaign[key].replace(' ', '+')}" for key, param in UTM_PARAMS if key in campaign)
        kind = rng.choices(("home", "product", "collection", "blog"), weights=(35, 30, 15, 20))[0]
        return self._page_of(kind, referrer, search, campaign)

    def _next_page(self, referrer: str) -> _Page:
        kind = self.rng.choices(("product", "collection", "home", "blog", "search", "cart", "about"), weights=(35, 16, 10, 10, 10, 14, 5))[
            0
        ]
        return self._page_of(kind, referrer)

    def _page_of(self, kind: str, referrer: str, search: str = "", campaign: dict[str, str] | None = None) -> _Page:
        rng = self.rng
        if kind == "product":
            product = rng.choice(PRODUCTS)
            return self._page(referrer, "Product", f"/products/{product[0]}", product[1], search, campaign, product)
        if kind == "collection":
            collection = rng.choice(COLLECTIONS)
            return self._page(referrer, "Collection", f"/collections/{collection}", collection.replace("-", " ").title(), search, campaign)
        if kind == "blog":
            post = rng.choice(POSTS)
            return self._page(referrer, "Blog Post", f"/blog/{post}", post.replace("-", " ").capitalize(), search, campaign)
        if kind == "search":
            query = rng.choice(SEARCHES)
            return self._page(referrer, "Search", "/search", f"Search: {query}", "?q=" + query.replace(" ", "+"))
        if kind == "cart":
            return self._page(referrer, "Cart", "/cart", "Your cart")
        if kind == "about":
            return self._page(referrer, "About", "/about", "About us")
        return self._page(referrer, "Home", "/", "Trail running gear", search, campaign)

    # -- calls ----------------------------------------------------------------------------------------------

    def _call(self, device: _Device, t: int, call_type: str, page: _Page, **fields: Any) -> dict[str, Any]:
        self._built += 1
        self._out_ms = t
        prefix = self._id_prefix
        call: dict[str, Any] = {
            "type": call_type,
            "messageId": f"{prefix[:8]}-{prefix[8:12]}-{prefix[12:16]}-{prefix[16:20]}-{self._built:012x}",
            "anonymousId": device.anonymous_id,
        }
        if device.identified:
            call["userId"] = device.person.user_id
        call.update(fields)
        context: dict[str, Any] = {
            "library": LIBRARY,
            "locale": device.locale,
            "timezone": device.timezone,
            "page": page.context(),
            "userAgent": device.user_agent,
        }
        if page.campaign:
            context["campaign"] = dict(page.campaign)
        call["context"] = context
        call["integrations"] = {}
        call["timestamp"] = iso(t)
        call["sentAt"] = iso(t + self.rng.randint(5, 400))
        return call

    def _page_view(self, device: _Device, t: int, page: _Page) -> dict[str, Any]:
        properties = page.context()
        if page.product:
            properties["category"] = page.product[2]
        return self._call(device, t, "page", page, name=page.name, properties=properties)

    def _track(self, device: _Device, t: int, page: _Page, action: str, cart: list[tuple]) -> dict[str, Any]:
        rng = self.rng
        product = page.product or rng.choice(PRODUCTS)
        sku, name, category, price = product
        item = {"product_id": sku, "sku": sku, "name": name, "category": category, "price": price}
        if action == "Product Viewed":
            properties: dict[str, Any] = {**item, "currency": "EUR"}
        elif action == "Product Added":
            quantity = rng.choice((1, 1, 1, 2, 3))
            cart.append((product, quantity))
            properties = {**item, "quantity": quantity, "currency": "EUR", "cart_id": f"cart_{device.anonymous_id[:8]}"}
        elif action == "Product Removed" and cart:
            (sku, name, category, price), quantity = cart.pop(rng.randrange(len(cart)))
            properties = {"product_id": sku, "sku": sku, "name": name, "category": category, "price": price, "quantity": quantity}
        elif action == "Products Searched":
            properties = {"query": rng.choice(SEARCHES)}
        elif action in ("Checkout Started", "Order Completed") and cart:
            lines = [{"product_id": p[0], "sku": p[0], "name": p[1], "price": p[3], "quantity": q} for p, q in cart]
            total = round(sum(p[3] * q for p, q in cart), 2)
            properties = {
                "order_id": f"ord_{rng.getrandbits(40):010x}",
                "value": total,
                "revenue": total,
                "currency": "EUR",
                "products": lines,
            }
            if action == "Order Completed":
                properties["shipping"] = 0.0 if total >= 100 else 4.95
                cart.clear()
        elif action == "Video Played":
            video_id, title, length = rng.choice(VIDEOS)
            properties = {"video_id": video_id, "title": title, "total_length": length, "position": rng.randint(0, length // 2)}
        else:  # a click (also what a cart action becomes with an empty cart)
            action = "Button Clicked"
            label, location = rng.choice(BUTTONS)
            properties = {"label": label, "location": location}
        return self._call(device, t, "track", page, event=action, properties=properties)


def calls(
    seed: int, *, events: int | None = None, visitors: int = 10_000, skew: float = 1.0, start: datetime = DEFAULT_START, site: str = SITE
) -> Iterator[dict[str, Any]]:
    """Segment calls of the simulated site for `seed`: `events` of them, or without end."""
    traffic = Traffic(seed, visitors=visitors, skew=skew, start=start, site=site)
    return iter(traffic) if events is None else islice(traffic, events)
