"""Segments in the console, in Debian's chromium over the real pipeline: Admin > Segments (a live count preview
from the builder, a refused condition naming its field, creating one), its members once the evaluator ran, the
status in the list, People filtered by the segment and a profile's Segments & lists tab with the entry time."""

from __future__ import annotations

import uuid

import orjson
import pytest
from playwright.sync_api import Page, expect

from footfall.topics import ensure_topics
from projections.clickhouse import connect
from projections.segment_evaluator import SegmentEvaluator
from tests.integration.test_console_browser import SCREENSHOTS, api, browser, page, sign_in, stack  # noqa: F401 - fixtures
from tests.pipeline import wait_until

pytestmark = pytest.mark.integration


def test_segments_in_the_console(page: Page, stack):  # noqa: F811 - fixtures
    settings = stack["settings"]
    ensure_topics(settings.kafka_bootstrap_servers, settings.topics.all())
    run = uuid.uuid4().hex[:6]
    people = {}
    for first, plan in (("Max", f"gold-{run}"), ("Ned", "basic")):
        created = api(stack, "POST", "/users", params={"wait": "true"}, json={"user_id": f"{first.lower()}-{run}", "first_name": first, "properties": {"plan": plan}})  # fmt: skip
        assert created.status_code in (201, 202), created.text
        people[first] = created.json()["person_id"]
    wait_until(
        lambda: all(api(stack, "GET", f"/users/{p}").status_code == 200 for p in people.values()),
        90,
        what="the users",
        watch=stack["watch"],
    )
    sign_in(page)

    page.get_by_role("link", name="Segments", exact=True).click()
    expect(page.get_by_role("heading", name="Segments", exact=True)).to_be_visible()
    form = page.locator("#new-segment")
    form.get_by_label("Name").fill(f"Gold {run}")
    form.get_by_label("Condition").fill(orjson.dumps({"kind": "group", "conditions": [{"kind": "property", "property": "$last_seen", "operator": "contains", "value": "x"}]}).decode())  # fmt: skip
    form.get_by_role("button", name="Preview count").click()
    expect(page.get_by_role("alert").first).to_contain_text("condition.conditions.0.operator")
    condition = {"kind": "group", "conditions": [{"kind": "property", "property": "plan", "operator": "equals", "value": f"gold-{run}"}]}
    page.locator("#new-segment").get_by_label("Condition").fill(orjson.dumps(condition).decode())
    page.locator("#new-segment").get_by_role("button", name="Preview count").click()
    expect(page.locator("#preview-count")).to_contain_text("1 user match")
    expect(page.locator("#preview-sample")).to_contain_text("Max")
    page.screenshot(path=str(SCREENSHOTS / "segments.png"), full_page=True)  # README's Admin > Segments
    page.locator("#new-segment").get_by_role("button", name="Create segment").click()
    expect(page.locator("#segment-name")).to_have_text(f"Gold {run}")
    segment_url = page.url
    segment_id = segment_url.rstrip("/").rsplit("/", 1)[-1]

    client = connect(settings.clickhouse_dsn)
    evaluator = SegmentEvaluator(settings, lambda sql, p: client.query(sql.replace("{db}", settings.database), parameters=p).result_rows)
    try:
        assert segment_id in evaluator.step()
    finally:
        evaluator.close()
    wait_until(lambda: api(stack, "GET", f"/segments/{segment_id}/members").json()["members"], 60, what="the member", watch=stack["watch"])
    page.goto(segment_url)
    expect(page.locator(f"#member-{people['Max']}")).to_contain_text("Max")
    expect(page.locator("table[aria-label='Members'] tbody tr")).to_have_count(1)

    page.goto("/admin/segments")
    expect(page.locator(f"#segment-{segment_id} .segment-state")).to_contain_text("ok")
    page.goto(f"/people?segment={segment_id}")
    expect(page.locator("#filter-segment")).to_have_value(segment_id)
    expect(page.get_by_role("link", name="Max")).to_be_visible()
    expect(page.get_by_role("link", name="Ned")).to_have_count(0)
    page.goto(f"/people/{people['Max']}?tab=groups")
    expect(page.locator(f"#segment-{segment_id}-1")).to_contain_text(f"Gold {run}")
