"""Tracking meets property definitions and GeoIP, end to end on real infrastructure: a tracking call is never
refused because of a property (the event is stored whole, the violating value stays out of the profile and
is a bad row naming the property, its type and the rule), and the collector's location of the client
address reaches the events and the person's initial and last location."""

from __future__ import annotations

import httpx
import orjson
import pytest
from confluent_kafka import Producer

from footfall.topics import ensure_topics
from schemas.bad_rows import BadRow
from schemas.properties import PropertyDefinition
from tests.pipeline import WRITE_KEY, collector, processor, projector, topic_values, wait_until

pytestmark = pytest.mark.integration
US, GB = "8.8.8.8", "81.2.69.142"


def test_a_violating_property_keeps_the_event_but_not_the_value_and_geo_reaches_events_and_persons(settings, clickhouse_client, tmp_path):
    ensure_topics(settings.kafka_bootstrap_servers, settings.topics.all())
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    plan = PropertyDefinition(name="plan", type="enum", options=["free", "pro"])
    producer.produce(settings.topics.property_definitions.name, plan.model_dump_json().encode(), b"plan")
    producer.flush(10)
    db = settings.database
    logs = tmp_path / "logs"
    with (
        collector(settings, logs, FOOTFALL_TRUSTED_PROXIES="127.0.0.1") as url,
        processor(settings, logs) as worker,
        projector(settings) as projection,
    ):
        auth = (WRITE_KEY, "")
        identify = {
            "anonymousId": "anon-g",
            "userId": "user-g",
            "messageId": "m-identify",
            "timestamp": "2026-01-01T10:00:00Z",
            "traits": {"email": "not-an-address", "first_name": "Ann", "plan": "gold"},
        }
        later = {
            "userId": "user-g",
            "event": "Upgraded",
            "messageId": "m-track",
            "timestamp": "2026-01-01T11:00:00Z",
            "properties": {"$set": {"plan": "pro"}},
        }
        for path, body, address in (("/v1/identify", identify, US), ("/v1/track", later, GB)):
            answer = httpx.post(url + path, json=body, auth=auth, headers={"X-Forwarded-For": address}, timeout=10)
            assert answer.status_code == 200, answer.text  # never refused because of a property

        def person():
            rows = clickhouse_client.query(
                f"SELECT properties, initial_country, initial_region, initial_city, last_country, last_city FROM {db}.persons FINAL "
                f"WHERE JSONExtractString(properties, 'first_name') = 'Ann' AND JSONExtractString(properties, 'plan') = 'pro'"
            ).result_rows
            return rows[0] if rows else None

        found = wait_until(person, timeout_s=120, what="the person's profile", watch=(worker, projection))
        events = dict(clickhouse_client.query(f"SELECT message_id, traits FROM {db}.events FINAL").result_rows)
        contexts = dict(
            clickhouse_client.query(
                f"SELECT message_id, JSONExtractString(context, 'geo', 'country') FROM {db}.events FINAL WHERE type != 'profile_change'"
            ).result_rows
        )

    properties = orjson.loads(found[0])
    assert "email" not in properties and properties["plan"] == "pro" and properties["first_name"] == "Ann"
    assert orjson.loads(events["m-identify"]) == identify["traits"]  # the event itself is kept whole
    assert contexts == {"m-identify": "US", "m-track": "GB"}
    assert found[1:] == ("US", "California", "Mountain View", "GB", found[5]) and found[5]

    bad = [BadRow.model_validate_json(value) for value in topic_values(settings, settings.topics.dead_letter.name)]
    refused = {(row.kind, row.field, row.rule, row.reason.split(" ")[0]) for row in bad if row.stage == "projector"}
    assert refused == {
        ("property_violation", "traits.email", "type", "(string)"),
        ("property_violation", "traits.plan", "options", "(string)"),
    }
    kept = {orjson.loads(row.payload)["property"]: orjson.loads(row.payload) for row in bad if row.stage == "projector"}
    assert kept["plan"]["value"] == '"gold"' and kept["plan"]["message_id"] == "m-identify"
