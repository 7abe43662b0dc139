"""Admin > Webhooks in Debian's chromium over the real pipeline: create with each field's error shown where it was
typed, the secret shown once, a delivery to a receiver on 127.0.0.1 listed with its status, and delete after a
confirmation. Saves a README screenshot into docs/screenshots/."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Page, expect

from footfall.topics import ensure_topics
from tests.integration.test_console_browser import SCREENSHOTS, api, browser, page, reload_until, sign_in, stack  # noqa: F401 - fixtures
from tests.integration.test_profile_changes import dispatching, receiving
from tests.pipeline import wait_until

pytestmark = pytest.mark.integration


def test_webhooks_in_the_console(page: Page, stack):  # noqa: F811 - fixtures
    settings = stack["settings"]
    ensure_topics(settings.kafka_bootstrap_servers, settings.topics.all())
    run = uuid.uuid4().hex[:6]
    with receiving() as receiver, dispatching(settings):
        sign_in(page)
        page.get_by_role("link", name="Webhooks").click()
        expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()

        form = page.locator("#new-webhook")
        form.get_by_label("Target URL").fill("ftp://example.com/nope")
        form.get_by_label("Secret").fill("short")
        form.get_by_role("button", name="Create webhook").click()
        expect(page.locator("#hook-url-error")).to_contain_text("http")
        expect(page.locator("#hook-url")).to_have_attribute("aria-invalid", "true")
        expect(page.get_by_role("table", name="Webhooks")).not_to_contain_text("ftp://example.com/nope")

        form.get_by_label("Target URL").fill(receiver.url(f"console-{run}"))
        form.get_by_label("Secret").fill("")
        form.get_by_label("tag_added").check()
        form.get_by_label("Description").fill(f"tags {run}")
        form.get_by_role("button", name="Create webhook").click()
        expect(page.locator("#created-secret")).to_be_visible()
        assert len(page.locator("#created-secret").inner_text()) == 64
        row = page.get_by_role("table", name="Webhooks").locator("tbody tr", has_text=f"tags {run}")
        expect(row).to_contain_text("tag_added")

        created = api(stack, "POST", "/users", params={"wait": "true"}, json={"user_id": f"hook-{run}", "first_name": "Hana"})
        person = created.json()["person_id"]
        wait_until(lambda: api(stack, "GET", f"/users/{person}").status_code == 200, 90, what="the user", watch=stack["watch"])
        tagged = api(stack, "PATCH", f"/users/{person}", params={"wait": "true"}, json={"tags": {"add": [f"t-{run}"]}})
        assert tagged.status_code == 200, tagged.text
        wait_until(lambda: receiver.calls[f"console-{run}"], 90, what="the delivery", watch=stack["watch"])

        row.get_by_role("link").first.click()
        reload_until(page, lambda: page.locator("tr.delivery").count() > 0, "the delivery's record")
        expect(page.locator("tr.delivery").first.locator(".delivery-status")).to_have_text("delivered")
        expect(page.locator("tr.delivery").first).to_contain_text("tag_added")
        page.screenshot(path=SCREENSHOTS / "webhooks.png", full_page=True)

        page.get_by_role("button", name="Delete webhook…").click()
        expect(page.get_by_role("heading", name="Delete the webhook")).to_be_visible()
        page.get_by_role("button", name="Yes, delete").click()
        expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()
        expect(page.get_by_role("table", name="Webhooks").locator("tbody tr", has_text=f"tags {run}")).to_have_count(0)
