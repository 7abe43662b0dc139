"""Writes tests/vectors/config_bucketing.json from schemas.configs (run after a deliberate change of the
bucketing, which reshuffles every user: `python -m tests.vectors.make_config_bucketing`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from schemas.configs import ConfigSpec, ConfigVersion, Subject, bucket, in_rollout, rollout_salt, serve, split, variant_salt

PATH = Path(__file__).with_name("config_bucketing.json")
IDS = ["", "a", "user-1", "anon-4f9c1d2e", "42", "émilie@exemple.fr", "東京", "🙂", "x" * 200, "a:b:c"]
KEYS = [("new-checkout", ""), ("new-checkout", "s1"), ("pricing.page", ""), ("k", "x:y")]
CONFIG = {
    "key": "checkout-button",
    "type": "string",
    "variants": [{"key": "control", "weight": 50}, {"key": "green", "weight": 30}, {"key": "blue", "weight": 20}],
    "rules": [
        {"condition": {"kind": "property", "property": "plan", "operator": "equals", "value": "pro"}, "variant": "blue"},
        {"rollout_percent": 40},
    ],
    "default": "control",
    "salt": "2026",
}


def vectors() -> dict:
    spec = ConfigSpec.model_validate(CONFIG)
    version = ConfigVersion(spec=spec, version=3, change="updated", changed_at=datetime(2026, 1, 1, tzinfo=UTC))
    return {
        "about": "docs/configs.md#bucketing: bucket = (uint64_be(sha256(utf8(key + ':' + salt + ':' + id))[0:8]) >> 11) / 2**53",
        "bucket": [
            {"config_key": key, "salt": salt, "bucketing_id": id_, "bucket": bucket(key, salt, id_)} for key, salt in KEYS for id_ in IDS
        ],
        "rollout": [
            {
                "config_key": "new-checkout",
                "salt": "",
                "bucketing_id": id_,
                "percent": percent,
                "rollout_bucket": bucket("new-checkout", rollout_salt(""), id_),
                "in": in_rollout("new-checkout", "", id_, percent),
            }
            for id_ in IDS[1:6]
            for percent in (0, 10, 20, 50, 100)
        ],
        "split": {
            "config": CONFIG,
            "cases": [
                {
                    "bucketing_id": f"device-{n}",
                    "variant_bucket": bucket(spec.key, variant_salt(spec.salt), f"device-{n}"),
                    "variant": split(spec.variants, spec.key, spec.salt, f"device-{n}"),
                }
                for n in range(20)
            ],
        },
        "serve": {
            "config": CONFIG,
            "version": 3,
            "cases": [
                {"subject": subject, "served": serve(version, Subject(**subject)).answer()}
                for subject in (
                    [{"anonymous_id": f"device-{n}"} for n in range(12)]
                    + [{"anonymous_id": "device-3", "user_id": "ann", "properties": {"plan": "pro"}}, {"user_id": "bob"}]
                )
            ],
        },
    }


if __name__ == "__main__":
    PATH.write_text(json.dumps(vectors(), ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {PATH}")
