"""Lifecycle stages and lists in the console, in Debian's chromium over the real pipeline: Admin > Lifecycle stages
(add, rename, reorder, delete with the users moved), Admin > Lists (create, add members, rename), People filtered
by stage and list with the Stage column, and a profile's stage header, Stage history tab (a manual move back with
its reason) and Segments & lists tab (remove from a list). Saves README screenshots into docs/screenshots/."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Page, expect

from footfall.topics import ensure_topics
from tests.integration.test_console_browser import SCREENSHOTS, api, browser, page, reload_until, sign_in, stack  # noqa: F401 - fixtures
from tests.pipeline import wait_until

pytestmark = pytest.mark.integration


def job_done(page: Page) -> None:  # noqa: F811 - the fixture's name
    expect(page.locator("#job-status dd[data-key=state]")).to_have_text("done", timeout=90_000)


def test_stages_and_lists_in_the_console(page: Page, stack):  # noqa: F811 - fixtures
    ensure_topics(stack["settings"].kafka_bootstrap_servers, stack["settings"].topics.all())
    run = uuid.uuid4().hex[:6]
    people = []
    for first in ("Kim", "Lou"):
        created = api(
            stack,
            "POST",
            "/users",
            params={"wait": "true"},
            json={"user_id": f"{first.lower()}-{run}", "first_name": first, "stage": "lead"},
        )
        assert created.status_code in (201, 202), created.text
        people.append(created.json()["person_id"])
    wait_until(lambda: all(api(stack, "GET", f"/users/{p}").status_code == 200 for p in people), 90, what="the users", watch=stack["watch"])
    sign_in(page)

    # Admin > Lifecycle stages: add, rename, move up, then delete it with its user moved.
    page.get_by_role("link", name="Lifecycle stages").click()
    expect(page.get_by_role("heading", name="Lifecycle stages")).to_be_visible()
    form = page.locator("#add-stage")
    form.get_by_label("Id").fill(f"trial_{run}")
    form.get_by_label("Name").fill(f"Trial {run}")
    form.get_by_role("button", name="Add stage").click()
    row = page.locator(f"#stage-trial_{run}")
    expect(row).to_contain_text(f"Trial {run}")
    row.get_by_role("button", name=f"Move Trial {run} up").click()
    expect(page.locator("table[aria-label='Lifecycle stages'] tbody tr").nth(8)).to_have_id(f"stage-trial_{run}")
    subscriber = page.locator("#stage-subscriber")
    subscriber.get_by_label("New name for Subscriber").fill("Newsletter subscriber")
    subscriber.get_by_role("button", name="Rename").click()
    expect(page.locator("#stage-subscriber th")).to_have_text("Newsletter subscriber")
    # A rule in the segment language: refused naming the field, previewed, saved.
    page.locator(f"#stage-trial_{run}").get_by_role("link", name=f"Add the rule of Trial {run}").click()
    expect(page.get_by_role("heading", name=f"Rule of Trial {run}")).to_be_visible()
    rule = page.locator("#stage-rule textarea")
    rule.fill(f'{{"kind": "segment", "segment_id": "no-such-{run}"}}')
    page.get_by_role("button", name="Save rule").click()
    expect(page.get_by_role("alert")).to_contain_text(f"rule: no segment 'no-such-{run}'")
    page.locator("#stage-rule textarea").fill(
        f'{{"kind": "group", "conditions": [{{"kind": "tag", "tag": "nobody-{run}"}}, {{"kind": "event", "event": "Trial Started", "days": 7}}]}}'
    )
    page.get_by_role("button", name="Preview count").click()
    expect(page.locator("#preview-count")).to_contain_text("0 users meet it now")
    page.get_by_role("button", name="Save rule").click()
    expect(page.locator(f"#stage-trial_{run}")).to_contain_text(f"rule:trial_{run}")
    assert api(stack, "GET", f"/lifecycle-stages/trial_{run}").json()["rule"]["conditions"][1]["event"] == "Trial Started"
    assert api(stack, "PATCH", f"/users/{people[1]}", params={"wait": "true"}, json={"stage": f"trial_{run}"}).status_code == 200
    page.reload()
    expect(page.locator(f"#stage-trial_{run}")).to_contain_text("1")
    page.screenshot(path=SCREENSHOTS / "lifecycle-stages.png", full_page=True)
    page.locator(f"#stage-trial_{run}").get_by_role("link", name=f"Delete Trial {run}").click()
    expect(page.get_by_text("1 user is in")).to_be_visible()
    page.get_by_label("Move them to").select_option("customer")
    page.get_by_role("button", name="Yes, delete").click()
    job_done(page)
    page.goto("/admin/stages")
    expect(page.locator(f"#stage-trial_{run}")).to_have_count(0)
    wait_until(lambda: api(stack, "GET", f"/users/{people[1]}").json()["stage"] == "customer", 60, what="the move", watch=stack["watch"])

    # Admin > Lists: create, add both users, rename.
    page.get_by_role("link", name="Lists", exact=True).click()
    page.locator("#new-list").get_by_label("Name").fill(f"Beta {run}")
    page.get_by_role("button", name="Create list").click()
    expect(page.locator("#list-name")).to_have_text(f"Beta {run}")
    list_url = page.url
    page.get_by_label("Add users").fill(f"user_id:kim-{run}\nuser_id:lou-{run}")
    page.get_by_role("button", name="Add to list").click()
    job_done(page)
    page.goto(list_url)
    expect(page.locator("table[aria-label='Members'] tbody tr")).to_have_count(2)
    expect(page.locator(f"#member-{people[0]}")).to_contain_text("console")
    page.locator("#rename-list").get_by_label("Name").fill(f"Beta testers {run}")
    page.locator("#rename-list").get_by_role("button", name="Rename").click()
    expect(page.locator("#list-name")).to_have_text(f"Beta testers {run}")
    list_id = list_url.rstrip("/").rsplit("/", 1)[-1]

    # People: filter by stage and by list; the Stage column names the stage.
    page.goto("/people")
    page.locator("#filter-stage").select_option("customer")
    page.get_by_role("button", name="Apply").click()
    table = page.get_by_role("table", name="People")
    expect(table.locator("tbody tr")).to_have_count(1)
    expect(table).to_contain_text("Lou")
    expect(table).to_contain_text("Customer")
    page.locator("#filter-stage").select_option("")
    page.locator("#filter-list").select_option(list_id)
    page.get_by_role("button", name="Apply").click()
    expect(table.locator("tbody tr")).to_have_count(2)

    # Profile: the stage in the header; a manual move back with its reason; the list membership, then removed.
    page.goto(f"/people/{people[1]}")
    expect(page.locator("#profile-stage")).to_have_text("Customer")
    page.get_by_role("link", name="Stage history").click()
    page.locator("#stage-select").select_option("lead")
    page.get_by_label("Reason").fill("trial ended without a purchase")
    page.get_by_role("button", name="Set stage").click()
    expect(page.locator("#profile-stage")).to_have_text("Lead")
    history = page.get_by_role("table", name="Stage history")
    expect(history.locator("tbody tr").first).to_contain_text("trial ended without a purchase")
    expect(history).to_contain_text(f"stage Trial {run} (trial_{run}) deleted")
    expect(history.locator("tbody tr")).to_have_count(4)
    page.screenshot(path=SCREENSHOTS / "profile-stage-history.png", full_page=True)
    page.get_by_role("link", name="Segments & lists").click()
    lists = page.get_by_role("table", name="Lists")
    expect(lists).to_contain_text(f"Beta testers {run}")
    lists.get_by_role("button", name=f"Remove from Beta testers {run}").click()
    reload_until(page, lambda: page.get_by_role("table", name="Lists").get_by_role("button").count() == 0, "the removal")
    expect(page.get_by_role("table", name="Lists")).to_contain_text("console")
