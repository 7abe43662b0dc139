"""Companies and objects under partitioned profiles (FOOTFALL_PERSONS_PARTITIONED: the persons' owners fold the
profiles): a membership derived by email domain follows the owner's rows, an object links the user and shows on
their objects, and a delete removes the user's links and membership while the object and the company stay."""

from __future__ import annotations

import uuid

import pytest
from segment import analytics

from tests.api_support import api_stack, stack_settings
from tests.pipeline import WRITE_KEY

pytestmark = pytest.mark.integration


def test_companies_and_objects_work_with_partitioned_profiles(kafka_bootstrap, clickhouse_dsn, clickhouse_client, tmp_path):
    settings = stack_settings(kafka_bootstrap, clickhouse_dsn, tmp_path / "data").model_copy(
        update={"persons_partitioned": True, "company_domain_membership": True}
    )
    tag = uuid.uuid4().hex[:6]
    domain, ann = f"hooli-{tag}.example", f"ann-{tag}"
    with api_stack(settings, clickhouse_client, tmp_path / "logs") as stack:
        api, auth = stack.api, stack.auth
        get = lambda path: api.get(f"/api/v1{path}", headers=auth)  # noqa: E731 - a one-line reader for this test
        assert (
            api.post("/api/v1/companies?wait=true", json={"company_id": f"hooli-{tag}", "domain": domain}, headers=auth).status_code == 201
        )
        sdk = analytics.Client(WRITE_KEY, host=stack.collector_url, sync_mode=True, max_retries=0)
        sdk.identify(user_id=ann, traits={"email": f"ann@{domain}"})
        person = stack.wait(lambda: (r := get(f"/users/user_id:{ann}")).status_code == 200 and r.json()["person_id"], "ann's profile")
        company = stack.wait(lambda: (c := get(f"/companies/hooli-{tag}").json())["member_count"] == 1 and c, "ann derived by domain")
        assert company["last_seen"] is not None
        assert [(c["company_id"], c["derived"]) for c in get(f"/users/user_id:{ann}/companies").json()["companies"]] == [
            (f"hooli-{tag}", True)
        ]
        made = api.post(
            "/api/v1/objects/ticket?wait=true",
            json={"id": f"t-{tag}", "links": {"users": [f"user_id:{ann}"], "companies": [f"hooli-{tag}"]}},
            headers=auth,
        )
        assert made.status_code == 201 and [u["person_id"] for u in made.json()["object"]["users"]] == [person]
        assert [o["id"] for o in get(f"/users/user_id:{ann}/objects?type=ticket").json()["objects"]] == [f"t-{tag}"]

        assert api.delete(f"/api/v1/users/user_id:{ann}?wait=true", headers=auth).status_code == 200
        stack.wait(lambda: get(f"/objects/ticket/t-{tag}").json()["users"] == [], "the ticket without ann")
        stack.wait(lambda: get(f"/companies/hooli-{tag}").json()["member_count"] == 0, "hooli without ann")
        assert [c["company_id"] for c in get(f"/objects/ticket/t-{tag}").json()["companies"]] == [f"hooli-{tag}"]
