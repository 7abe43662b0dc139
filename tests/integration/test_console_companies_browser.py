"""The Companies pages in a real browser (Debian's chromium, driven by Playwright) over the real pipeline: a
group call from the Segment SDK makes a company; a person finds it in the list by search, opens it, sees its
member, sets a property, creates a company, adds a member with a role as primary, ends that membership, and sees
the user's companies on the profile's Companies tab. Forms carry the CSRF token: a post without it is refused."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright
from segment import analytics

from api.console.app import ConsoleConfig
from footfall.topics import ensure_topics
from projections.clickhouse import migrate
from schemas.config import FootfallSettings
from tests.console import ADMIN_KEY, chromium_path, console_app, served
from tests.pipeline import WRITE_KEY, collector, processor, projector, wait_until

pytestmark = pytest.mark.integration
expect.set_options(timeout=30_000)


@pytest.fixture
def stack(kafka_bootstrap, clickhouse_dsn, clickhouse_client, tmp_path) -> Iterator[dict]:
    run_id = uuid.uuid4().hex[:10]
    settings = FootfallSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        clickhouse_url=clickhouse_dsn,
        topic_prefix=f"test-{run_id}",
        database=f"test_{run_id}",
        data_dir=tmp_path / "data",
        partitions=3,
        batch_max_seconds=0.3,
    )
    ensure_topics(settings.kafka_bootstrap_servers, settings.topics.all())
    migrate(clickhouse_client, settings.database)
    with contextlib.ExitStack() as stack:
        collector_url = stack.enter_context(collector(settings, tmp_path / "logs"))
        worker = stack.enter_context(processor(settings, tmp_path / "logs"))
        projection = stack.enter_context(projector(settings))
        console_url = stack.enter_context(served(console_app(settings, ConsoleConfig(collector_url=collector_url))))
        yield {"settings": settings, "collector": collector_url, "console": console_url, "watch": (worker, projection)}
    clickhouse_client.command(f"DROP DATABASE IF EXISTS {settings.database}")


def api(stack, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(
        method, stack["console"] + "/api/v1" + path, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30, **kwargs
    )


def test_a_person_walks_the_company_pages(stack):
    run = uuid.uuid4().hex[:6]
    acme, ann, bo = f"acme-{run}", f"ann-{run}", f"bo-{run}"
    sdk = analytics.Client(WRITE_KEY, host=stack["collector"], sync_mode=True, max_retries=0)
    sdk.identify(user_id=ann, traits={"email": f"ann@{run}.example", "name": "Ann Lee"})
    sdk.group(user_id=ann, group_id=acme, traits={"name": f"Acme {run}", "website": f"https://{run}.example", "plan": "pro"})
    created = api(stack, "POST", "/users", params={"wait": "true"}, json={"user_id": bo, "email": f"bo@{run}.example", "first_name": "Bo"})
    assert created.status_code in (201, 202), created.text
    wait_until(lambda: api(stack, "GET", f"/users/user_id:{bo}").status_code == 200, 90, what="bo's profile", watch=stack["watch"])
    wait_until(
        lambda: (
            api(stack, "GET", f"/companies/{acme}").status_code == 200
            and api(stack, "GET", f"/companies/{acme}").json()["member_count"] == 1
        ),
        90,
        what="acme with ann",
        watch=stack["watch"],
    )

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        page: Page = browser.new_context(base_url=stack["console"], viewport={"width": 1360, "height": 900}).new_page()
        page.goto("/companies")
        page.get_by_label("Admin key").fill(ADMIN_KEY)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Companies")).to_be_visible()
        refused = page.request.post(f"/companies/{acme}/delete", form={"confirm": "1"})  # signed in, but no CSRF token
        assert refused.status == 403 and api(stack, "GET", f"/companies/{acme}").status_code == 200

        # Find it by search; open it: its properties and its member from the group call.
        page.get_by_role("searchbox", name="Search").fill(f"acme {run}")
        page.get_by_role("button", name="Apply").click()
        expect(page.locator("#companies tbody tr")).to_have_count(1)
        page.get_by_role("link", name=f"Acme {run}").click()
        expect(page.get_by_role("heading", name=f"Acme {run}")).to_be_visible()
        expect(page.locator("#company-domain")).to_have_text(f"{run}.example")
        expect(page.locator("#company-properties")).to_contain_text("pro")
        expect(page.locator("#members tbody tr")).to_have_count(1)
        expect(page.locator("#members")).to_contain_text(f"ann@{run}.example")
        expect(page.locator("#members")).to_contain_text("group")
        page.locator("#set-property").get_by_label("Property").fill("industry")
        page.locator("#set-property").get_by_label("Value").fill("anvils")
        page.get_by_role("button", name="Set property").click()
        expect(page.locator("#company-properties")).to_contain_text("anvils")

        # Create a company, add Bo as its primary buyer, then end that membership.
        page.get_by_role("link", name="Companies").first.click()
        page.get_by_text("New company…").click()
        form = page.locator("#create-company")
        form.get_by_label("Name").fill(f"Initech {run}")
        form.get_by_label("Id").fill(f"initech-{run}")
        form.get_by_role("button", name="Create company").click()
        expect(page.get_by_role("heading", name=f"Initech {run}")).to_be_visible()
        adding = page.locator("#add-member")
        adding.get_by_label("User").fill(f"user_id:{bo}")
        adding.get_by_label("Role").fill("buyer")
        adding.get_by_label("Primary company").check()
        adding.get_by_role("button", name="Add member").click()
        expect(page.locator("#members tbody tr")).to_have_count(1)
        expect(page.locator("#members")).to_contain_text("buyer")
        expect(page.locator("#member-count")).to_have_text("1 member")
        page.screenshot(path="docs/screenshots/company.png", full_page=True)

        # The profile's Companies tab shows it.
        page.get_by_role("link", name=f"bo@{run}.example").click()
        page.get_by_role("link", name="Companies").last.click()
        expect(page.locator("#user-companies")).to_contain_text(f"Initech {run}")
        expect(page.locator("#user-companies")).to_contain_text("buyer")
        page.get_by_role("link", name=f"Initech {run}").click()
        page.get_by_role("button", name=f"End membership of bo@{run}.example").click()
        expect(page.locator("#members")).to_contain_text("No members.")
        page.get_by_role("link", name="Include ended memberships").click()
        expect(page.locator("#members")).to_contain_text("buyer")
        ended = api(stack, "GET", f"/users/user_id:{bo}/companies", params={"include_ended": "true"}).json()["companies"]
        assert [(c["company_id"], c["is_active"], c["role"], c["is_primary"]) for c in ended] == [(f"initech-{run}", False, "buyer", True)]

        # Delete it: a confirmation page says what goes and what stays; Yes deletes, the list no longer has it.
        page.get_by_role("button", name="Delete company").click()
        expect(page.get_by_role("heading", name=f"Delete the company initech-{run}?")).to_be_visible()
        expect(page.locator("main")).to_contain_text("its users stay")
        page.get_by_role("button", name="Yes, delete").click()
        expect(page.get_by_role("heading", name="Companies")).to_be_visible()
        expect(page.locator("body")).to_contain_text(f"The company initech-{run} deleted.")
        expect(page.locator("#companies")).not_to_contain_text(f"Initech {run}")
        browser.close()
    assert api(stack, "GET", f"/companies/initech-{run}").status_code == 404
