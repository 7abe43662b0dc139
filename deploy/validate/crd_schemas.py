"""Turn CustomResourceDefinitions into the JSON schemas kubeconform reads: <out>/<group>/<kind>_<version>.json.

    python deploy/validate/crd_schemas.py OUT_DIR CRD.yaml...

Strict like kubeconform's own Kubernetes schemas: an object that lists its properties (and does not keep unknown
fields) refuses any other, so a misspelt field in a ScaledObject fails validation instead of being ignored.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml


def strict(schema: dict) -> dict:
    """The schema with additionalProperties: false wherever an object names its properties."""
    result = dict(schema)
    if "properties" in result:
        result["properties"] = {name: strict(sub) for name, sub in result["properties"].items()}
        if not result.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in result:
            result["additionalProperties"] = False
    for key in ("items", "additionalProperties"):
        if isinstance(result.get(key), dict):
            result[key] = strict(result[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in result:
            result[key] = [strict(sub) for sub in result[key]]
    return result


def write_schemas(out: Path, crd_file: Path) -> list[Path]:
    written = []
    for crd in yaml.safe_load_all(crd_file.read_text()):
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"].lower()
        for version in crd["spec"]["versions"]:
            schema = strict(version["schema"]["openAPIV3Schema"])
            # apiVersion and kind are checked by kubeconform's lookup; metadata by the API server.
            schema["properties"]["metadata"] = {"type": "object"}
            path = out / group / f"{kind}_{version['name']}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(schema, indent=1))
            written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1])
    for name in sys.argv[2:]:
        for path in write_schemas(target, Path(name)):
            print(f"schema: {path}")
