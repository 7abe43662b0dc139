"""Kubernetes JSON schemas for kubeconform, from the kubernetes-validate package (PyPI, in uv.lock).

    python deploy/validate/k8s_schemas.py OUT_DIR 1.34.0

The package keeps every definition in one `_definitions.json` that its files reference as `/api/_definitions.json`,
a path only its own resolver knows. kubeconform reads one file per kind, so each kind is written standalone: with the
definitions it reaches under `definitions` (kubeconform compiles as draft 4), referenced locally. Output: OUT_DIR/v<version>-standalone-strict/<kind>-<group>-<version>.json.
"""

from __future__ import annotations

import json
import pathlib
import sys

import kubernetes_validate

# A kind's file points into the definitions file; the definitions point at each other within it.
PREFIXES = ("/api/_definitions.json#/$defs/", "#/$defs/")


def definition(ref) -> str | None:
    """The definition a $ref names, or None."""
    if isinstance(ref, str):
        for prefix in PREFIXES:
            if ref.startswith(prefix):
                return ref[len(prefix) :]
    return None


def references(node) -> set[str]:
    found = set()
    if isinstance(node, dict):
        if (name := definition(node.get("$ref"))) is not None:
            found.add(name)
        for value in node.values():
            found |= references(value)
    elif isinstance(node, list):
        for value in node:
            found |= references(value)
    return found


def localised(node):
    if isinstance(node, dict):
        return {
            key: ("#/definitions/" + definition(value) if key == "$ref" and definition(value) is not None else localised(value))
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [localised(value) for value in node]
    return node


def write_standalone(out: pathlib.Path, version: str) -> int:
    source = pathlib.Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{version}-local-strict"
    definitions = json.loads((source / "_definitions.json").read_text())["$defs"]
    target = out / f"v{version}-standalone-strict"
    target.mkdir(parents=True, exist_ok=True)
    count = 0
    for path in source.glob("*.json"):
        if path.name.startswith("_") or path.name == "all.json":
            continue
        schema = json.loads(path.read_text())
        reached, pending = set(), references(schema)
        while pending:
            name = pending.pop()
            if name not in reached and name in definitions:
                reached.add(name)
                pending |= references(definitions[name])
        standalone = localised(schema)
        standalone["definitions"] = {name: localised(definitions[name]) for name in sorted(reached)}
        (target / path.name).write_text(json.dumps(standalone))
        count += 1
    return count


if __name__ == "__main__":
    print(f"{write_standalone(pathlib.Path(sys.argv[1]), sys.argv[2])} kinds")
