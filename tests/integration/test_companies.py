"""Companies against the real pipeline: group calls from the Segment SDK create companies and memberships (a user
in two companies, traits with $set semantics under late and duplicate calls), derived memberships by email domain,
the companies API (create, update, members added and ended, search and pages), delete and erase of users leaving
their companies in place, and `footfall replay` rebuilding the same companies and memberships."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from segment import analytics

from projections.clickhouse import connect
from projections.replay import end_offsets, replay
from tests.api_support import api_stack, stack_settings
from tests.pipeline import WRITE_KEY, wait_until

pytestmark = pytest.mark.integration

COMPANY_SNAPSHOTS = {
    "companies": "SELECT * EXCEPT (version) FROM {db}.companies FINAL ORDER BY company_id",
    "company_members": "SELECT * EXCEPT (version) FROM {db}.company_members FINAL ORDER BY company_id, person_id",
    "persons": "SELECT person_id, email, company_domain FROM {db}.persons FINAL ORDER BY person_id",
}


def company_snapshot(client, database: str) -> dict[str, list[tuple]]:
    return {name: client.query(sql.format(db=database)).result_rows for name, sql in COMPANY_SNAPSHOTS.items()}


def test_companies_from_group_calls_the_api_and_email_domains_hold_through_delete_erase_and_replay(
    kafka_bootstrap, clickhouse_dsn, clickhouse_client, tmp_path
):
    settings = stack_settings(kafka_bootstrap, clickhouse_dsn, tmp_path / "data").model_copy(update={"company_domain_membership": True})
    tag = uuid.uuid4().hex[:6]
    acme, globex = f"acme-{tag}", f"globex-{tag}"
    ann, bob, carol, dave = (f"{name}-{tag}" for name in ("ann", "bob", "carol", "dave"))
    domain = f"acme-{tag}.example"
    now = datetime.now(UTC)
    with api_stack(settings, clickhouse_client, tmp_path / "logs") as stack:
        api, auth = stack.api, stack.auth
        get = lambda path: api.get(f"/api/v1{path}", headers=auth)  # noqa: E731 - a one-line reader for this test
        # Company properties are typed by their own definitions; a user definition of the same name does not apply.
        defined = api.post(
            "/api/v1/company-property-definitions", json={"name": "employees", "type": "integer", "minimum": 1}, headers=auth
        )
        assert defined.status_code == 201 and defined.json()["object_type"] == "company", defined.text
        user_tier = api.post("/api/v1/property-definitions", json={"name": "tier", "type": "enum", "options": ["a", "b"]}, headers=auth)
        assert user_tier.status_code == 201 and "object_type" not in user_tier.json()
        assert [d["name"] for d in api.get("/api/v1/company-property-definitions", headers=auth).json()["definitions"]] == ["employees"]
        assert "employees" not in [d["name"] for d in api.get("/api/v1/property-definitions", headers=auth).json()["definitions"]]
        sdk = analytics.Client(WRITE_KEY, host=stack.collector_url, sync_mode=True, max_retries=0)
        sdk.identify(user_id=ann, traits={"email": f"ann@{domain}", "name": "Ann"})
        sdk.identify(user_id=bob, traits={"email": f"bob.{tag}@gmail.com"})
        sdk.identify(user_id=carol, traits={"email": f"carol@{domain}"})  # no group call: derived by her domain
        sdk.group(
            user_id=ann,
            group_id=acme,
            traits={"name": "Acme", "website": f"https://www.{domain}/", "plan": "pro"},
            timestamp=now,
            message_id=f"g-ann-{tag}",
        )
        sdk.group(user_id=bob, group_id=acme, traits={"employees": 40}, timestamp=now + timedelta(seconds=1))
        sdk.group(user_id=bob, group_id=globex, traits={"name": "Globex"}, timestamp=now)
        # Late (an older plan) and duplicate (the same message again): neither changes the company.
        sdk.group(user_id=ann, group_id=acme, traits={"plan": "free"}, timestamp=now - timedelta(hours=1))
        sdk.group(
            user_id=ann,
            group_id=acme,
            traits={"name": "Acme", "website": f"https://www.{domain}/", "plan": "pro"},
            timestamp=now,
            message_id=f"g-ann-{tag}",
        )

        company = stack.wait(
            lambda: (r := get(f"/companies/{acme}")).status_code == 200 and r.json()["member_count"] == 3 and r.json(),
            "acme with ann, bob (group calls) and carol (by domain)",
        )
        assert company["name"] == "Acme" and company["domain"] == domain
        assert company["properties"] == {"name": "Acme", "website": f"https://www.{domain}/", "plan": "pro", "employees": 40}
        members = {m["email"]: m for m in get(f"/companies/{acme}/members").json()["members"]}
        assert {e: (m["source"], m["derived"], m["is_active"]) for e, m in members.items()} == {
            f"ann@{domain}": ("group", False, True),
            f"bob.{tag}@gmail.com": ("group", False, True),
            f"carol@{domain}": ("domain", True, True),
        }
        # A trait its definition refuses is kept out of the company (the call itself is kept) and recorded as a bad row.
        sdk.group(user_id=ann, group_id=acme, traits={"employees": "lots"}, timestamp=now + timedelta(seconds=5))
        refused = stack.wait(
            lambda: stack.query("SELECT field, rule FROM {db}.bad_rows FINAL WHERE kind = 'property_violation'"), "the refused trait"
        )
        assert refused == [("traits.employees", "type")]
        assert get(f"/companies/{acme}").json()["properties"]["employees"] == 40
        # An anonymous visitor's group call, then the visitor identifies as ann: the membership moves to ann.
        sdk.group(anonymous_id=f"device-{tag}", group_id=globex, traits={"industry": "energy"})
        sdk.identify(anonymous_id=f"device-{tag}", user_id=ann)
        anns = stack.wait(lambda: len(c := get(f"/users/user_id:{ann}/companies").json()["companies"]) == 2 and c, "ann in acme and globex")
        assert sorted((c["company_id"], c["source"]) for c in anns) == [(acme, "group"), (globex, "group")]
        stack.wait(lambda: get(f"/companies/{globex}").json()["member_count"] == 2, "globex: bob and ann, the visitor merged away")
        bobs = stack.wait(lambda: len(c := get(f"/users/user_id:{bob}/companies").json()["companies"]) == 2 and c, "bob in two companies")
        assert sorted(c["company_id"] for c in bobs) == [acme, globex]
        assert company["last_seen"] >= members[f"ann@{domain}"]["last_seen"]

        # The API: create, update, a member with a role made primary, then ended; search; pages.
        created = api.post(
            "/api/v1/companies?wait=true",
            json={"company_id": f"initech-{tag}", "name": "Initech", "domain": f"initech-{tag}.example", "properties": {"tier": "gold"}},
            headers=auth,
        )  # not the user's enum
        assert created.status_code == 201, created.text
        assert created.json()["company"]["properties"] == {"name": "Initech", "domain": f"initech-{tag}.example", "tier": "gold"}
        assert api.post("/api/v1/companies", json={"company_id": f"initech-{tag}"}, headers=auth).status_code == 409
        bad = api.post("/api/v1/companies", json={"name": 7}, headers=auth)
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"].endswith("name")
        bad = api.post("/api/v1/companies", json={"name": "X", "properties": {"employees": 0}}, headers=auth)
        assert bad.status_code == 422 and (bad.json()["errors"][0]["field"], bad.json()["errors"][0]["rule"]) == ("employees", "minimum")
        updated = api.patch(
            f"/api/v1/companies/initech-{tag}?wait=true", json={"set": {"tier": "platinum"}, "unset": ["domain"]}, headers=auth
        )
        assert updated.status_code == 200 and updated.json()["company"]["properties"] == {"name": "Initech", "tier": "platinum"}
        sdk.identify(user_id=dave, traits={"email": f"dave@{domain}"})
        stack.wait(lambda: get(f"/users/user_id:{dave}").status_code == 200, "dave's profile")
        added = api.post(
            f"/api/v1/companies/initech-{tag}/members?wait=true",
            json={"user": f"user_id:{dave}", "role": "buyer", "primary": True},
            headers=auth,
        )
        assert added.status_code == 200, added.text
        assert (added.json()["membership"]["role"], added.json()["membership"]["is_primary"], added.json()["membership"]["source"]) == (
            "buyer",
            True,
            "api",
        )
        daves = stack.wait(
            lambda: len(c := get(f"/users/user_id:{dave}/companies").json()["companies"]) == 2 and c, "dave: initech and acme (derived)"
        )
        assert [(c["company_id"], c["is_primary"], c["derived"]) for c in daves] == [(f"initech-{tag}", True, False), (acme, False, True)]
        ended = api.post(f"/api/v1/companies/initech-{tag}/members/user_id:{dave}/end?wait=true", headers=auth)
        assert ended.status_code == 200 and ended.json()["membership"]["is_active"] is False and ended.json()["membership"]["ended_at"]
        assert get(f"/companies/initech-{tag}/members").json()["members"] == []
        assert [m["role"] for m in get(f"/companies/initech-{tag}/members?include_ended=true").json()["members"]] == ["buyer"]
        assert [c["company_id"] for c in get(f"/companies?q=initech-{tag}").json()["companies"]] == [f"initech-{tag}"]
        assert [c["company_id"] for c in get(f"/companies?domain={domain}").json()["companies"]] == [acme]
        first = get("/companies?limit=2&sort=company_id").json()
        second = get(f"/companies?limit=2&sort=company_id&cursor={first['next_cursor']}").json()
        ids = [c["company_id"] for c in first["companies"] + second["companies"]]
        assert ids == sorted(ids) and len(set(ids)) == 3
        assert get("/companies/nope").status_code == 404
        paths = api.get("/api/v1/openapi.json").json()["paths"]
        assert {
            "/api/v1/companies",
            "/api/v1/companies/{company_id}",
            "/api/v1/companies/{company_id}/members",
            "/api/v1/companies/{company_id}/members/{ref}/end",
            "/api/v1/users/{ref}/companies",
            "/api/v1/company-property-definitions",
        } <= set(paths)
        assert api.post(f"/api/v1/companies/{acme}/members", json={"user": "user_id:nobody"}, headers=auth).status_code == 404

        # Delete a company: it and its memberships go, its (former) member stays.
        assert api.delete(f"/api/v1/companies/initech-{tag}?wait=true", headers=auth).status_code == 200
        assert get(f"/companies/initech-{tag}").status_code == 404
        assert [c["company_id"] for c in get(f"/users/user_id:{dave}/companies?include_ended=true").json()["companies"]] == [acme]

        # Delete bob and erase carol: their memberships go, the companies stay.
        assert api.delete(f"/api/v1/users/user_id:{bob}?wait=true", headers=auth).status_code == 200
        assert api.post(f"/api/v1/users/user_id:{carol}/erase?wait=true", headers=auth).status_code == 200
        left = stack.wait(lambda: (c := get(f"/companies/{acme}").json())["member_count"] == 2 and c, "acme without bob and carol")
        assert sorted(m["email"] for m in get(f"/companies/{acme}/members").json()["members"]) == [f"ann@{domain}", f"dave@{domain}"]
        assert left["properties"]["employees"] == 40  # bob's trait write stays: it describes the company
        assert get(f"/companies/{globex}").json()["member_count"] == 1  # ann
        assert stack.query(
            "SELECT count() FROM {db}.company_members FINAL WHERE person_id NOT IN (SELECT person_id FROM {db}.persons FINAL)"
        ) == [(0,)]

        stack.worker.stop()
        live = stack.projector
        finish = end_offsets(settings, list(live.handlers))
        wait_until(lambda: all(live.committed.get(p, 0) >= end for p, end in finish.items()), 60, what="the projector caught up")
        before = company_snapshot(clickhouse_client, settings.database)
        assert len(before["companies"]) == 2 and len(before["company_members"]) == 3  # ann (acme, globex), dave (acme, derived)

    replay(settings, connect(settings.clickhouse_dsn))
    after = company_snapshot(clickhouse_client, settings.database)
    for name in COMPANY_SNAPSHOTS:
        assert after[name] == before[name], f"{name} differs after the replay"
