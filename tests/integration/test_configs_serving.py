"""Serving dynamic configs from the collector against a real broker: every reason over HTTP, overrides and
their expiry, a disabled config, a stable variant across identify, exposures collapsed per window, the GET
form, refusals, and a definition change reaching every worker of a 2-worker collector within seconds."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest
from confluent_kafka import Producer

from schemas.config import FootfallSettings
from schemas.configs import EXPOSURE_EVENT, ConfigSpec, ConfigVersion
from schemas.person_properties import PersonProperties
from tests.integration.test_collector_support import NO_TESTCLIENT_WARNING, WRITE_KEY, read_all, running_collector
from tests.pipeline import WRITE_KEY as PIPELINE_KEY
from tests.pipeline import collector, wait_until

pytestmark = [pytest.mark.integration, NO_TESTCLIENT_WARNING]
AUTH = {"X-Write-Key": WRITE_KEY}

BANNER = {
    "key": "banner",
    "type": "json",
    "variants": [{"key": "off", "value": None}, {"key": "small", "value": {"size": 1}, "weight": 1}, {"key": "big", "value": {"size": 3}}],
    "rules": [
        {"condition": {"kind": "property", "property": "plan", "operator": "equals", "value": "enterprise"}, "variant": "big"},
        {"condition": {"kind": "property", "property": "beta", "operator": "equals", "value": True}, "rollout_percent": 0},
        {"condition": {"kind": "property", "property": "country", "operator": "in", "value": ["FR", "DE"]}},
    ],
    "default": "off",
}
EXPERIMENT = {
    "key": "checkout",
    "type": "string",
    "variants": [{"key": "a", "weight": 1}, {"key": "b", "weight": 1}],
    "rules": [{}],
    "default": "a",
}


def publish(settings: FootfallSettings, spec: dict, version: int, *, deleted: bool = False) -> ConfigVersion:
    """A config version on the configs topic, as the management API writes it."""
    record = ConfigVersion(
        spec=ConfigSpec.model_validate(spec), version=version, change="updated", changed_at=datetime.now(UTC), deleted=deleted
    )
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    producer.produce(settings.topics.configs.name, record.model_dump_json().encode(), record.key)
    assert producer.flush(10) == 0
    return record


def served(client, body: dict, **headers) -> dict:
    response = client.post("/v1/configs", json=body, headers={**AUTH, **headers})
    assert response.status_code == 200, response.text
    return response.json()["configs"]


def wait_for_version(client, key: str, version: int) -> None:
    """Until the app serves that version (503 while it is still loading the topics)."""

    def probe() -> bool:
        response = client.post("/v1/configs", json={"anonymousId": "probe"}, headers=AUTH)
        return response.status_code == 200 and response.json()["configs"].get(key, {}).get("version") == version

    wait_until(probe, 20, what=f"{key} v{version}")


def exposures(settings: FootfallSettings) -> list[dict]:
    return [m.value for m in read_all(settings, settings.topics.raw.name) if m.value.get("event") == EXPOSURE_EVENT]


def test_every_reason_override_expiry_and_disabled(collector_settings, tmp_path):
    settings = collector_settings
    spec = {**BANNER, "overrides": [{"ref": "vip", "variant": "big"}]}
    publish(settings, spec, 1)
    with running_collector(settings, tmp_path) as client:
        wait_for_version(client, "banner", 1)
        enterprise = served(client, {"userId": "u1", "properties": {"plan": "enterprise"}})["banner"]
        assert enterprise == {"variant": "big", "value": {"size": 3}, "version": 1, "reason": "rule_match", "rule": 0}
        assert served(client, {"userId": "u2", "properties": {"country": "DE"}})["banner"] == {
            "variant": "small", "value": {"size": 1}, "version": 1, "reason": "rule_match", "rule": 2}  # fmt: skip
        assert served(client, {"userId": "u3", "properties": {"beta": True}})["banner"]["reason"] == "rollout_excluded"
        assert served(client, {"userId": "u4"})["banner"]["reason"] == "default"
        assert served(client, {"anonymousId": "dev", "userId": "vip"})["banner"]["reason"] == "override"
        assert served(client, {"userId": "tester"})["banner"]["reason"] == "default"
        expiry = datetime.now(UTC) + timedelta(seconds=3)
        spec = {**spec, "overrides": [*spec["overrides"], {"ref": "tester", "variant": "small", "expires_at": expiry.isoformat()}]}
        publish(settings, spec, 2)
        wait_for_version(client, "banner", 2)
        assert served(client, {"userId": "tester"})["banner"]["reason"] == "override"
        wait_until(lambda: served(client, {"userId": "tester"})["banner"]["reason"] == "default", 10, what="the override's expiry")
        assert datetime.now(UTC) >= expiry
        publish(settings, {**spec, "enabled": False}, 3)
        wait_for_version(client, "banner", 3)
        assert served(client, {"userId": "vip", "properties": {"plan": "enterprise"}})["banner"] == {
            "variant": "off", "value": None, "version": 3, "reason": "disabled", "rule": None}  # fmt: skip
        publish(settings, spec, 4, deleted=True)
        wait_until(lambda: "banner" not in served(client, {"userId": "u1"}), 20, what="the deleted config gone")


def test_stable_variant_across_identify_and_stored_properties(collector_settings, tmp_path):
    settings = collector_settings
    publish(settings, EXPERIMENT, 1)
    publish(settings, BANNER, 1)
    with running_collector(settings, tmp_path) as client:
        wait_for_version(client, "checkout", 1)
        anonymous = {f"device-{n}": served(client, {"anonymousId": f"device-{n}"})["checkout"]["variant"] for n in range(40)}
        assert set(anonymous.values()) == {"a", "b"}
        for device, variant in anonymous.items():  # logged in on the same device: the same variant
            assert served(client, {"anonymousId": device, "userId": f"user-of-{device}"})["checkout"]["variant"] == variant
        # Properties stored for the person (person-properties topic) target without being sent ...
        producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
        mapping = {"distinct_id": "ann", "person_id": "person-ann", "version": 1}
        producer.produce(settings.topics.identities.name, orjson.dumps(mapping), b"ann")
        stored = PersonProperties(person_id="person-ann", version=5, properties={"plan": "enterprise"})
        producer.produce(settings.topics.person_properties.name, stored.model_dump_json().encode(), b"person-ann")
        assert producer.flush(10) == 0
        wait_until(lambda: served(client, {"userId": "ann"})["banner"]["variant"] == "big", 20, what="stored properties")
        # ... and sent properties take precedence over stored ones (they may not have arrived yet)
        assert served(client, {"userId": "ann", "properties": {"plan": "free"}})["banner"]["reason"] == "default"
        # GET form, with a subset of keys
        got = client.get("/v1/configs", params={"userId": "ann", "keys": "banner", "writeKey": WRITE_KEY})
        assert got.status_code == 200 and list(got.json()["configs"]) == ["banner"]
        assert got.json()["person_id"] == "person-ann"
        got = client.get("/v1/configs", params={"anonymousId": "d", "properties": '{"country": "FR"}'}, headers=AUTH)
        assert got.json()["configs"]["banner"]["rule"] == 2


def test_exposures_are_recorded_once_per_window(collector_settings, tmp_path):
    settings = collector_settings
    publish(settings, EXPERIMENT, 1)
    with running_collector(settings, tmp_path, config_exposure_window_s=3) as client:
        wait_for_version(client, "checkout", 1)
        probes = len(exposures(settings))  # wait_for_version's own requests were exposures of "probe"
        for _ in range(5):
            variant = served(client, {"anonymousId": "dev-1", "userId": "zoe"})["checkout"]["variant"]
        recorded = [e for e in exposures(settings) if e.get("user_id") == "zoe"]
        assert len(recorded) == 1
        assert recorded[0]["properties"] == {"config_key": "checkout", "variant": variant, "version": 1, "reason": "rule_match", "rule": 0}
        assert recorded[0]["anonymous_id"] == "dev-1"
        publish(settings, {**EXPERIMENT, "description": "v2"}, 2)  # a new version is a new exposure
        wait_for_version(client, "checkout", 2)
        served(client, {"anonymousId": "dev-1", "userId": "zoe"})
        served(client, {"anonymousId": "dev-1", "userId": "zoe"})
        assert [e["properties"]["version"] for e in exposures(settings) if e.get("user_id") == "zoe"] == [1, 2]
        time.sleep(3.2)  # the window passed: recorded again, once
        served(client, {"anonymousId": "dev-1", "userId": "zoe"})
        served(client, {"anonymousId": "dev-1", "userId": "zoe"})
        assert [e["properties"]["version"] for e in exposures(settings) if e.get("user_id") == "zoe"] == [1, 2, 2]
        assert len(exposures(settings)) > probes


def test_refusals_name_the_field(collector_settings, tmp_path):
    publish(collector_settings, EXPERIMENT, 1)
    with running_collector(collector_settings, tmp_path) as client:
        wait_for_version(client, "checkout", 1)
        assert client.post("/v1/configs", json={"anonymousId": "x"}).status_code == 401
        missing = client.post("/v1/configs", json={"properties": {}}, headers=AUTH)
        assert missing.status_code == 400 and missing.json()["errors"][0]["field"] == "userId or anonymousId"
        placeholder = client.post("/v1/configs", json={"anonymousId": "undefined"}, headers=AUTH)
        assert placeholder.status_code == 400
        bad = client.post("/v1/configs", json={"anonymousId": "x", "properties": [1]}, headers=AUTH)
        assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "properties"
        bad_keys = client.post("/v1/configs", json={"anonymousId": "x", "keys": ["no spaces"]}, headers=AUTH)
        assert bad_keys.status_code == 400 and bad_keys.json()["errors"][0]["field"].startswith("keys")
        assert client.get("/v1/configs", params={"anonymousId": "x", "properties": "{"}, headers=AUTH).status_code == 400
        assert served(client, {"anonymousId": 42})["checkout"]["version"] == 1  # integer ids are ids


def test_a_definition_change_reaches_every_worker_within_seconds(settings, tmp_path):
    from footfall.topics import ensure_topics

    ensure_topics(settings.kafka_bootstrap_servers, settings.topics.all())
    publish(settings, EXPERIMENT, 1)
    auth = {"X-Write-Key": PIPELINE_KEY, "Connection": "close"}  # a new connection each time: either worker may take it

    def versions(url: str, n: int = 40) -> set[int]:
        seen = set()
        for i in range(n):
            response = httpx.post(f"{url}/v1/configs", json={"anonymousId": f"w{i}"}, headers=auth, timeout=5)
            seen.add(response.json()["configs"]["checkout"]["version"] if response.status_code == 200 else -response.status_code)
        return seen

    with collector(settings, tmp_path / "logs", workers=2) as url:
        wait_until(lambda: versions(url) == {1}, 60, what="both workers loaded")
        publish(settings, {**EXPERIMENT, "enabled": False}, 2)
        changed = time.monotonic()
        probes: list[float] = []

        def all_on_v2() -> bool:
            probes.append(time.monotonic())  # when the successful round of requests began
            return versions(url, 20) == {2}

        wait_until(all_on_v2, 30, interval_s=0.05, what="every worker serving v2")
        assert probes[-1] - changed < 5, f"the change took {probes[-1] - changed:.1f}s to reach every worker"


def test_a_rollout_increase_keeps_everyone_already_in(collector_settings, tmp_path):
    settings = collector_settings
    flag = {"key": "new-search", "rules": [{"rollout_percent": 10}]}
    publish(settings, flag, 1)
    with running_collector(settings, tmp_path) as client:
        wait_for_version(client, "new-search", 1)

        def members() -> set[str]:
            return {
                f"d{n}"
                for n in range(600)
                if served(client, {"anonymousId": f"d{n}", "keys": ["new-search"]})["new-search"]["value"] is True
            }

        at_10 = members()
        assert 30 <= len(at_10) <= 95  # 10 % of 600 within ~4 standard deviations
        publish(settings, {**flag, "rules": [{"rollout_percent": 20}]}, 2)
        wait_for_version(client, "new-search", 2)
        at_20 = members()
        assert at_10 < at_20 and 85 <= len(at_20) <= 155
