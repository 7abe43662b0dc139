"""The console in a real browser (Debian's chromium, driven by Playwright) over the real pipeline:
collector → Kafka → processor → projector → ClickHouse (chdb) → management API → console.

A person signs in, creates a user (a violating value first, shown at the field), finds them, opens the
profile, sees tracked events in the timeline and the daily graph, tags, disables and deletes them; a page
on another origin loads the Sources page's snippet and its page view reaches that visitor's timeline.
The walk saves the README's screenshots into docs/screenshots/.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from api.console.app import ConsoleConfig
from projections.clickhouse import migrate
from schemas.config import FootfallSettings
from schemas.identity import person_id_for
from tests.console import ADMIN_KEY, chromium_path, console_app, served
from tests.pipeline import WRITE_KEY, collector, processor, projector, wait_until

pytestmark = pytest.mark.integration
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SOURCE = "test-source"
expect.set_options(timeout=30_000)  # a page on a loaded 2-core machine can take seconds: assertions wait for it


@pytest.fixture(scope="module")
def stack(kafka_bootstrap, clickhouse_dsn, clickhouse_client, tmp_path_factory) -> Iterator[dict]:
    """The whole system once for this module's walks: its own topics and database."""
    run_id = uuid.uuid4().hex[:10]
    tmp = tmp_path_factory.mktemp("console")
    settings = FootfallSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        clickhouse_url=clickhouse_dsn,
        topic_prefix=f"test-{run_id}",
        database=f"test_{run_id}",
        data_dir=tmp / "data",
        partitions=3,
        batch_max_seconds=0.3,
    )
    migrate(clickhouse_client, settings.database)
    logs = tmp / "logs"
    with contextlib.ExitStack() as stack:
        collector_url = stack.enter_context(collector(settings, logs))
        worker = stack.enter_context(processor(settings, logs))
        projection = stack.enter_context(projector(settings))
        app = console_app(settings, ConsoleConfig(collector_url=collector_url), sources=[(SOURCE, WRITE_KEY)])
        console_url = stack.enter_context(served(app))
        yield {"settings": settings, "collector": collector_url, "console": console_url, "watch": (worker, projection)}
    clickhouse_client.command(f"DROP DATABASE IF EXISTS {settings.database}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, stack) -> Iterator[Page]:
    context = browser.new_context(base_url=stack["console"], viewport={"width": 1360, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(20_000)
    yield tab
    context.close()


def api(stack, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(
        method, stack["console"] + "/api/v1" + path, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30, **kwargs
    )


def sign_in(page: Page) -> None:
    page.goto("/people")
    expect(page).to_have_url("/login?next=/people")
    page.get_by_label("Admin key").fill(ADMIN_KEY)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="People")).to_be_visible()


def search(page: Page, text: str) -> None:
    """Search, and wait until the results page has loaded (a reload during that navigation would be refused)."""
    page.get_by_role("searchbox", name="Search").fill(text)
    with page.expect_navigation(wait_until="load"):
        page.get_by_role("button", name="Apply").click()


def reload_until(page: Page, probe, what: str, timeout_s: float = 90) -> None:
    def seen() -> bool:
        try:
            page.reload()
        except PlaywrightError as refused:  # a navigation still in flight ("Not attached to an active page"): ask again
            if "Not attached" not in str(refused):
                raise
            page.wait_for_load_state("load")
            return False
        return probe()

    wait_until(seen, timeout_s, interval_s=1, what=what)


def definitions_api_exists(stack) -> bool:
    return api(stack, "GET", "/property-definitions").status_code == 200


def test_a_person_walks_the_console(page: Page, stack):
    run = uuid.uuid4().hex[:6]
    email, user_id = f"ann.{run}@example.com", f"ann-{run}"
    for i, (first, last) in enumerate([("Bo", "Berg"), ("Cleo", "Dahl"), ("Dev", "Engel")]):
        created = api(
            stack,
            "POST",
            "/users",
            params={"wait": "true"},
            json={
                "email": f"{first.lower()}.{run}@example.com",
                "first_name": first,
                "last_name": last,
                "user_id": f"{first.lower()}-{run}",
                "tags": ["newsletter"] if i % 2 else [],
            },
        )
        assert created.status_code in (200, 201, 202), created.text
    custom = definitions_api_exists(stack)
    if custom:
        defined = api(
            stack,
            "POST",
            "/property-definitions",
            json={"name": "seats", "type": "integer", "label": "Seats", "minimum": 1, "maximum": 100},
        )
        assert defined.status_code in (200, 201, 202), defined.text

    sign_in(page)

    # Create a user: a violating value is shown at its field, in the page, before anything is sent.
    page.get_by_role("link", name="Create user").first.click()
    expect(page.get_by_role("heading", name="Create user")).to_be_visible()
    page.get_by_label("Email").fill(email)
    page.get_by_label("First name").fill("Ann")
    page.get_by_label("Last name").fill("Lee")
    if custom:
        bad, field, good = page.get_by_label("Seats"), "#prop\\.seats-error", "12"
        bad.fill("500")
    else:
        bad, field, good = page.get_by_label("Email"), "#prop\\.email-error", email
        bad.fill("ann-at-example")
    page.get_by_role("button", name="Create user").click()
    expect(page.locator(field)).to_be_visible()
    expect(page.locator(field)).not_to_be_empty()
    expect(bad).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("heading", name="Create user")).to_be_visible()  # still on the form
    page.screenshot(path=str(SCREENSHOTS / "create-user.png"), full_page=True)
    bad.fill(good)
    page.get_by_label("User id").fill(user_id)
    page.get_by_role("button", name="Create user").click()
    expect(page.locator("#profile-name")).to_have_text("Ann Lee")

    # Find her by search.
    page.get_by_role("link", name="People", exact=True).click()
    reload_until(page, lambda: page.get_by_role("link", name="Ann Lee").count() == 1, "Ann Lee in the list")
    page.screenshot(path=str(SCREENSHOTS / "people.png"), full_page=True)
    search(page, email)
    rows = page.locator("table.people tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(user_id)
    rows.first.get_by_role("link", name="Ann Lee").click()
    expect(page.locator("#profile-name")).to_have_text("Ann Lee")

    # Events sent through the collector reach the timeline and the daily graph.
    now = datetime.now(UTC)
    sent = [
        ("Viewed Pricing", now - timedelta(days=2)),
        ("Viewed Pricing", now - timedelta(days=1)),
        ("Started Trial", now - timedelta(minutes=5)),
    ]
    for n, (event, at) in enumerate(sent):
        response = httpx.post(
            stack["collector"] + "/v1/track",
            auth=(WRITE_KEY, ""),
            timeout=10,
            json={
                "userId": user_id,
                "event": event,
                "timestamp": at.isoformat(),
                "sentAt": now.isoformat(),
                "properties": {"plan": "pro", "n": n},
                "messageId": f"walk-{run}-{n}",
            },
        )
        assert response.status_code == 200, response.text
    page.get_by_role("link", name="Events").click()
    timeline = page.get_by_role("table", name="Timeline")
    reload_until(
        page,
        lambda: (
            timeline.locator("tbody tr").filter(has_text="Viewed Pricing").count() == 2
            and timeline.locator("tbody tr").filter(has_text="Started Trial").count() == 1
        ),
        "3 events in the timeline",
    )
    tracked = timeline.locator("tbody tr").filter(has_not_text="profile_change")  # beside the $ rows of the profile's changes
    expect(tracked.first).to_contain_text("Started Trial")  # newest first
    expect(timeline.locator("tbody tr").filter(has_text="$property_changed").first).to_be_visible()  # the create's changes
    reload_until(page, lambda: page.locator("#counts-total").inner_text().startswith("3 "), "3 events in the graph")
    counts = page.evaluate("document.getElementById('counts-chart').chart.data.datasets[0].data")
    assert sum(counts) == 3 and len(counts) == 30 and counts[-3:] == [1, 1, 1]
    page.get_by_label("Days", exact=True).select_option("7")
    page.get_by_label("Event", exact=True).fill("Viewed Pricing")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#counts-total")).to_have_text("2 Viewed Pricing in the last 7 days")
    assert page.evaluate("document.getElementById('counts-chart').chart.data.datasets[0].data.length") == 7
    expect(timeline.locator("tbody tr").filter(has_text="Started Trial")).to_have_count(0)
    page.get_by_label("Days", exact=True).select_option("30")
    page.get_by_label("Event", exact=True).fill("")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#counts-total")).to_have_text("3 events in the last 30 days")
    page.screenshot(path=str(SCREENSHOTS / "profile-events.png"), full_page=True)

    # Tag, disable, then delete (Yes/No), and she is gone from the list.
    page.get_by_label("Add tag").fill("vip")
    page.get_by_role("button", name="Add tag").click()
    expect(page.locator("#profile-tags")).to_contain_text("vip")
    page.get_by_role("button", name="Disable").click()
    expect(page.locator("#profile-status")).to_have_text("disabled")
    expect(page.get_by_role("button", name="Activate")).to_be_visible()
    page.get_by_role("button", name="Delete…").click()
    expect(page.get_by_role("heading", name="Delete Ann Lee?")).to_be_visible()
    page.get_by_role("button", name="Yes, delete").click()
    expect(page.get_by_role("status").filter(has_text="Ann Lee deleted.")).to_be_visible()
    search(page, email)
    expect(page.locator("table.people tbody")).to_contain_text("No one matches.")
    search(page, run)
    expect(page.get_by_role("link", name="Ann Lee")).to_have_count(0)


def test_the_sources_snippet_on_another_origin_sends_a_page_view_to_the_timeline(page: Page, browser: Browser, stack):
    sign_in(page)
    page.get_by_role("link", name="Sources").click()
    snippet = page.get_by_label(f"Snippet for {SOURCE}").input_value()
    assert "cdn.segment.com" not in snippet.replace('"https://cdn.segment.com', "")
    assert stack["collector"] in snippet

    title = f"Snippet page {uuid.uuid4().hex[:6]}"
    site = Starlette(
        routes=[
            Route(
                "/landing",
                lambda _r: HTMLResponse(
                    f"<!doctype html><html><head><title>{title}</title>{snippet}</head><body><h1>Landing</h1></body></html>"
                ),
            )
        ]
    )
    with served(site, ready_path=None) as site_url:
        site_url = site_url.replace("127.0.0.1", "localhost")  # another host and port: another origin
        visitor = browser.new_context()
        third_party: list[str] = []
        visit = visitor.new_page()
        visit.on("request", lambda r: third_party.append(r.url) if not r.url.startswith((site_url, stack["collector"])) else None)
        with visit.expect_response(lambda r: r.url.startswith(stack["collector"] + "/v1/p") and r.status == 200):
            visit.goto(site_url + "/landing")
        # analytics.js flushes the snippet's queued page() before it puts itself in the stub's place on `window`.
        visit.wait_for_function("() => typeof window.analytics.user === 'function'")
        anonymous_id = visit.evaluate("window.analytics.user().anonymousId()")
        visitor.close()
    assert third_party == [], third_party
    assert anonymous_id

    # The pipeline first (through the API, failing fast if a stage died), then the page: a timeout says which one lagged.
    wait_until(
        lambda: api(stack, "GET", "/users", params={"q": anonymous_id}).json()["users"],
        120,
        interval_s=1,
        what="the visitor through the pipeline",
        watch=stack["watch"],
    )
    page.get_by_role("link", name="People", exact=True).click()
    search(page, anonymous_id)
    reload_until(page, lambda: page.locator("table.people tbody tr a").count() == 1, "the visitor in the list")
    page.locator("table.people tbody tr a").first.click()
    page.get_by_role("link", name="Events").click()
    timeline = page.get_by_role("table", name="Timeline")
    reload_until(page, lambda: timeline.locator("tbody tr").filter(has_text="page").count() >= 1, "the page view in the timeline")
    expect(timeline.locator("tbody tr").first).to_contain_text("/landing")


def test_edit_in_place_columns_bulk_edit_export_and_erase(page: Page, stack):
    run = uuid.uuid4().hex[:6]
    refs = []
    for first in ("Flo", "Gus", "Hal"):
        created = api(
            stack,
            "POST",
            "/users",
            params={"wait": "true"},
            json={
                "email": f"{first.lower()}.{run}@example.com",
                "first_name": first,
                "last_name": run,
                "user_id": f"{first.lower()}-{run}",
            },
        )
        assert created.status_code in (200, 201, 202), created.text
        refs.append(created.json()["person_id"])
    sign_in(page)

    # Columns: hide Customer id, move Email first; the list shows that order.
    page.get_by_role("button", name="Columns").click()
    page.get_by_role("checkbox", name="Customer id").uncheck()
    page.get_by_role("button", name="Move Email up").click()
    page.get_by_role("button", name="Save columns").click()
    headers = page.locator("table.people thead th").all_inner_texts()
    assert [h.strip(" ▼▲") for h in headers[1:3]] == ["Email", "Name"] and "Customer id" not in headers

    # Bulk edit on the whole filter (a search that matches the three), confirmed first, then followed to done.
    search(page, f"{run}")
    reload_until(page, lambda: page.locator("table.people tbody tr a").count() == 3, "the three users")
    page.get_by_label("Apply to").select_option("filter")
    page.get_by_label("Action").select_option("tag")
    page.get_by_label("Tag / property").fill(f"bulk-{run}")
    page.get_by_role("button", name="Review bulk edit…").click()
    expect(page.locator("#bulk-summary")).to_contain_text(f"Add tag “bulk-{run}”")
    expect(page.locator("#bulk-summary")).to_contain_text(f"q={run}")
    page.get_by_role("button", name="Yes, apply").click()
    expect(page.locator("#job-status [data-key=state]")).to_have_text("done", timeout=60_000)
    expect(page.locator("#job-status [data-key=matched]")).to_have_text("3")

    # Export: the filtered list as CSV, in the chosen columns.
    page.get_by_role("link", name="Back to People").click()
    with page.expect_download() as download:
        page.get_by_role("button", name="Export CSV").click()
    text = Path(download.value.path()).read_text()
    lines = text.strip().splitlines()
    assert lines[0].startswith("person_id,Email,Name") and len(lines) == 4
    assert all(f"bulk-{run}" in line for line in lines[1:])

    # Edit a property in place (htmx swaps the row), then a value the API refuses stays in the row with its reason.
    page.goto(f"/people/{refs[0]}")
    page.get_by_role("link", name="Edit city").click()
    page.get_by_label("city", exact=True).fill("Oslo")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#prop-city .value")).to_have_text("Oslo")
    page.get_by_role("link", name="Edit email").click()
    page.get_by_label("email", exact=True).fill("not-an-email")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#prop-email .field-error")).to_be_visible()
    page.goto(f"/people/{refs[0]}")
    expect(page.locator("#prop-city .value")).to_have_text("Oslo")
    expect(page.locator("#prop-email .value")).to_have_text(f"flo.{run}@example.com")

    # Erase: two confirmations, the second naming what it does; then the user is gone.
    page.get_by_role("button", name="Erase (GDPR)…").click()
    page.get_by_role("button", name="Yes, continue").click()
    expect(page.get_by_role("heading", name=f"Really erase Flo {run}?")).to_be_visible()
    expect(page.locator("article.confirm")).to_contain_text("suppresses their identifiers")
    expect(page.locator("article.confirm")).to_contain_text(f"flo.{run}@example.com")
    page.get_by_role("button", name=f"Yes, erase Flo {run} for good").click()
    expect(page.get_by_role("status").filter(has_text="erased")).to_be_visible()
    assert api(stack, "GET", f"/users/{refs[0]}").status_code == 404


def test_the_configs_tab_shows_what_would_be_served_and_sets_and_removes_an_override(page: Page, stack):
    run = uuid.uuid4().hex[:6]
    key = f"layout-{run}"
    spec = {
        "key": key,
        "type": "string",
        "variants": [{"key": "classic", "weight": 50}, {"key": "compact", "weight": 50}],
        "rules": [{"rollout_percent": 100}],
        "default": "classic",
    }
    assert api(stack, "POST", "/configs", json=spec).status_code == 201
    created = api(stack, "POST", "/users", params={"wait": "true"}, json={"user_id": f"cfg-{run}", "first_name": "Ida"})
    assert created.status_code in (201, 202), created.text
    person_id = created.json()["person_id"]
    wait_until(lambda: api(stack, "GET", f"/users/{person_id}").status_code == 200, 90, what="the user readable", watch=stack["watch"])
    sign_in(page)
    page.goto(f"/people/{person_id}?tab=configs")
    row = page.locator(f"#config-{key}")
    expect(row).to_contain_text("never served")
    expect(row).to_contain_text("rule_match rule 0")
    row.get_by_label("Variant").select_option("compact")
    row.get_by_role("button", name=f"Override {key}").click()
    expect(page.get_by_role("status").filter(has_text=f"{key}: compact served to this user")).to_be_visible()
    expect(page.locator(f"#config-{key}")).to_contain_text("compact (v2, override)")
    assert api(stack, "GET", f"/configs/{key}").json()["overrides"][0]["ref"] == f"cfg-{run}"
    page.locator(f"#config-{key}").get_by_role("button", name=f"Remove the override of {key}").click()
    expect(page.get_by_role("status").filter(has_text=f"{key}: override removed")).to_be_visible()
    expect(page.locator(f"#config-{key}").get_by_role("button", name=f"Override {key}")).to_be_visible()
    assert api(stack, "GET", f"/configs/{key}").json()["overrides"] == []

    # Identity: a device that browsed anonymously, then logged in as this user, is listed as merged in.
    device = f"device-{run}"
    for call, body in (("track", {"event": "Viewed Pricing"}), ("identify", {"userId": f"cfg-{run}"})):
        sent = httpx.post(f"{stack['collector']}/v1/{call}", json={"anonymousId": device, **body}, auth=(WRITE_KEY, ""), timeout=30)
        assert sent.status_code == 200, sent.text
    page.get_by_role("link", name="Identity").click()
    reload_until(page, lambda: page.locator("#merges").filter(has_text=person_id_for(device)).count() == 1, "the device's person merged in")
    expect(page.locator("#distinct-ids")).to_contain_text(device)


def test_admin_configs_create_with_an_error_at_its_field_edit_rollout_disable_and_delete(page: Page, stack):
    key = f"checkout-{uuid.uuid4().hex[:6]}"
    sign_in(page)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Configs").click()
    page.get_by_role("button", name="New config").click()
    page.get_by_label("Key", exact=True).fill(key)
    page.get_by_label("Type", exact=True).select_option("string")
    page.get_by_label("Default variant").fill("classic")
    for i, variant in enumerate(("classic", "compact")):
        page.get_by_label(f"Variant {i} key").fill(variant)
        page.get_by_label(f"Variant {i} weight").fill("50")
    page.get_by_label("Rule 0 condition").fill('{"kind": "property", "property": "plan", "operator": "equals", "value": "pro"}')
    page.get_by_label("Rule 0 rollout").fill("25")
    page.get_by_label("Rule 0 variant").fill("fancy")  # not a variant: the API refuses it, at this field
    page.get_by_role("button", name="Create config").click()
    expect(page.locator("#rule_variant_0-error")).to_contain_text("not one of the variants")
    page.get_by_label("Rule 0 variant").fill("compact")
    page.get_by_role("button", name="Create config").click()
    expect(page.get_by_role("status").filter(has_text=f"Config {key} saved (version 1)")).to_be_visible()
    row = page.locator(f"#cfg-{key}")
    expect(row).to_contain_text('plan equals "pro" → 25% get compact')
    expect(row).to_contain_text("classic 50, compact 50")

    # Edit: the rule targets a tag instead (a segment that does not exist is refused at the condition's field), and
    # the rollout goes to 50%: a new version; the history lists both.
    row.get_by_role("link", name=f"Edit {key}").click()
    page.get_by_label("Rule 0 condition").fill(
        '{"kind": "group", "conditions": [{"kind": "tag", "tag": "vip"}, {"kind": "segment", "segment_id": "no-such-segment"}]}'
    )
    page.get_by_label("Rule 0 rollout").fill("50")
    page.get_by_role("button", name=f"Save {key}").click()
    expect(page.locator("#rule_condition_0-error")).to_contain_text("no segment 'no-such-segment'")
    page.get_by_label("Rule 0 condition").fill('{"kind": "tag", "tag": "vip"}')
    page.get_by_label("Rule 0 rollout").fill("50")
    page.get_by_role("button", name=f"Save {key}").click()
    expect(page.get_by_role("status").filter(has_text=f"Config {key} saved (version 2)")).to_be_visible()
    expect(page.locator(f"#cfg-{key}")).to_contain_text("tagged vip → 50% get compact")
    page.locator(f"#cfg-{key}").get_by_role("link", name=f"Edit {key}").click()
    expect(page.get_by_role("table", name="Versions").locator("tbody tr")).to_have_count(2)
    page.get_by_role("link", name="Cancel").click()

    # Disable, then delete with a confirmation: the API says what the console did.
    page.locator(f"#cfg-{key}").get_by_role("button", name=f"Disable {key}").click()
    expect(page.get_by_role("status").filter(has_text=f"{key} disabled")).to_be_visible()
    assert api(stack, "GET", f"/configs/{key}").json()["enabled"] is False
    page.locator(f"#cfg-{key}").get_by_role("link", name=f"Delete {key}").click()
    page.get_by_role("button", name="Yes, delete").click()
    expect(page.get_by_role("status").filter(has_text=f"Config {key} deleted")).to_be_visible()
    expect(page.locator(f"#cfg-{key}")).to_have_count(0)
    assert api(stack, "GET", f"/configs/{key}").status_code == 404


def test_import_a_csv_with_a_bad_row_and_download_the_errors(page: Page, stack, tmp_path):
    run = uuid.uuid4().hex[:6]
    upload = tmp_path / "people.csv"
    upload.write_text(
        f"user_id,email,first_name,surname\nimp-a-{run},a.{run}@example.com,Ida,Q\n"
        f"imp-b-{run},not-an-email,Jon,R\nimp-c-{run},c.{run}@example.com,Kim,S\n"
    )
    sign_in(page)
    page.get_by_role("link", name="Imports").click()
    page.get_by_label("CSV file (with a header row)").set_input_files(str(upload))
    page.get_by_role("button", name="Upload and map columns").click()
    expect(page.get_by_role("table", name="Column mapping")).to_be_visible()
    page.get_by_label("surname").select_option("last_name")
    page.get_by_label("Dry run: check every row, send nothing").uncheck()
    page.get_by_role("button", name="Start").click()
    status = page.locator("#import-status")
    expect(status.locator("[data-key=state]")).to_have_text("done", timeout=60_000)
    expect(status.locator("[data-key=rows_read]")).to_have_text("3")
    expect(status.locator("[data-key=accepted]")).to_have_text("2")
    expect(status.locator("[data-key=rejected]")).to_have_text("1")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the errors file").click()
    errors = Path(download.value.path()).read_text()
    assert "not-an-email" in errors and "email" in errors.splitlines()[1]
    wait_until(lambda: api(stack, "GET", f"/users/user_id:imp-c-{run}").status_code == 200, 60, what="the imported user")
    assert api(stack, "GET", f"/users/user_id:imp-c-{run}").json()["properties"].get("last_name") == "S"
