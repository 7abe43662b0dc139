"""The Deals / Tickets / Activities pages in a real browser (Debian's chromium, driven by Playwright) over the real
pipeline: a person creates a deal linked to a user, opens it, moves it through its stages, changes its owner, sets a
property, links and unlinks a company, filters the list by stage and owner, finds the deal on the user's profile
tab, and deletes it. Forms carry the CSRF token: a post without it is refused."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Page, expect, sync_playwright
from segment import analytics

from tests.console import ADMIN_KEY, chromium_path
from tests.integration.test_console_companies_browser import api, stack  # noqa: F401 - the same fixture
from tests.pipeline import WRITE_KEY, wait_until

pytestmark = pytest.mark.integration
expect.set_options(timeout=30_000)


def test_a_person_walks_the_deal_pages(stack):  # noqa: F811 - the fixture imported above
    run = uuid.uuid4().hex[:6]
    ann = f"ann-{run}"
    sdk = analytics.Client(WRITE_KEY, host=stack["collector"], sync_mode=True, max_retries=0)
    sdk.identify(user_id=ann, traits={"email": f"ann@{run}.example", "name": "Ann Lee"})
    made = api(stack, "POST", "/companies", params={"wait": "true"}, json={"company_id": f"acme-{run}", "name": f"Acme {run}"})
    assert made.status_code == 201, made.text
    wait_until(lambda: api(stack, "GET", f"/users/user_id:{ann}").status_code == 200, 90, what="ann's profile", watch=stack["watch"])
    other = api(stack, "POST", "/objects/deal", params={"wait": "true"}, json={"id": f"other-{run}", "owner": "bruno"})
    assert other.status_code == 201, other.text

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        page: Page = browser.new_context(base_url=stack["console"], viewport={"width": 1360, "height": 900}).new_page()
        page.goto("/objects/deal")
        page.get_by_label("Admin key").fill(ADMIN_KEY)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Deals")).to_be_visible()
        refused = page.request.post(f"/objects/deal/other-{run}/delete", form={"confirm": "1"})  # no CSRF token
        assert refused.status == 403 and api(stack, "GET", f"/objects/deal/other-{run}").status_code == 200

        # Create a deal linked to ann.
        page.get_by_text("New deal…").click()
        form = page.locator("#create-object")
        form.get_by_label("Name").fill(f"Big deal {run}")
        form.get_by_label("Owner").fill("alice")
        form.get_by_label("Link a user").fill(f"user_id:{ann}")
        form.get_by_role("button", name="Create deal").click()
        expect(page.get_by_role("heading", name=f"Big deal {run}")).to_be_visible()
        expect(page.locator("#object-stage")).to_have_text("open")
        expect(page.locator("#object-users")).to_contain_text(f"ann@{run}.example")

        # Move it to won (closed), set a property, change the owner, link and unlink a company.
        page.locator("#move-stage").get_by_label("Stage").select_option("won")
        page.locator("#move-stage").get_by_role("button", name="Move").click()
        expect(page.locator("#object-stage")).to_have_text("won")
        expect(page.get_by_text("closed")).to_be_visible()
        page.locator("#set-object-property").get_by_label("Property").fill("amount")
        page.locator("#set-object-property").get_by_label("Value").fill("5000")
        page.locator("#set-object-property").get_by_role("button", name="Set property").click()
        expect(page.locator("#object-properties")).to_contain_text("5000")
        page.locator("#edit-object").get_by_label("Owner").fill("carla")
        page.locator("#edit-object").get_by_role("button", name="Save").click()
        expect(page.locator("#object-owner")).to_have_text("carla")
        page.locator("#link-object").get_by_label("Link").select_option("companies")
        page.locator("#link-object").get_by_label("Ref").fill(f"acme-{run}")
        page.locator("#link-object").get_by_role("button", name="Link").click()
        expect(page.locator("#object-companies")).to_contain_text(f"Acme {run}")
        page.screenshot(path="docs/screenshots/deal.png", full_page=True)
        page.get_by_role("button", name=f"Unlink Acme {run}").click()
        expect(page.locator("#object-companies")).to_contain_text("No linked companies.")

        # The list, filtered by stage and by owner.
        page.get_by_role("link", name="Deals", exact=True).first.click()
        filters = page.locator("#object-filters")
        filters.get_by_label("Stage").select_option("won")
        filters.get_by_role("button", name="Apply").click()
        expect(page.locator("#objects tbody tr")).to_have_count(1)
        expect(page.locator("#objects")).to_contain_text(f"Big deal {run}")
        filters.get_by_label("Stage").select_option("")
        filters.get_by_label("Owner").fill("bruno")
        filters.get_by_role("button", name="Apply").click()
        expect(page.locator("#objects tbody tr")).to_have_count(1)
        expect(page.locator("#objects")).to_contain_text(f"other-{run}")

        # The user's profile tab shows the deal; open it from there and delete it.
        page.goto(f"/people/{api(stack, 'GET', f'/users/user_id:{ann}').json()['person_id']}?tab=objects")
        expect(page.locator("#user-deals")).to_contain_text(f"Big deal {run}")
        expect(page.locator("#user-deals")).to_contain_text("won")
        page.locator("#user-deals").get_by_role("link", name=f"Big deal {run}").click()
        deal_id = page.url.rsplit("/", 1)[-1]
        page.get_by_role("button", name="Delete").click()
        expect(page.get_by_role("heading", name=f"Delete the deal {deal_id}?")).to_be_visible()
        expect(page.locator("main")).to_contain_text("its users and companies stay")
        page.get_by_role("button", name="Yes, delete").click()
        expect(page.locator("body")).to_contain_text(f"The deal {deal_id} deleted.")
        expect(page.locator("#objects")).not_to_contain_text(f"Big deal {run}")
        browser.close()
    assert api(stack, "GET", f"/users/user_id:{ann}/objects", params={"type": "deal"}).json()["objects"] == []
