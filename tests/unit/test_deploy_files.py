"""What can be checked of the image and the deployments without a Docker engine or a cluster (issue 21).
`make validate-deploy` checks the compose file, the chart and the alert rules with their own tools."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from dockerfile_parse import DockerfileParser
from typer.main import get_command

from footfall.cli import cli
from schemas.config import FootfallSettings

ROOT = Path(__file__).resolve().parents[2]
STAGES = {"collector", "processor", "projector", "migrate", "topics", "api"}


def instructions(name: str) -> list[dict]:
    return [i for i in DockerfileParser(str(ROOT / "Dockerfile")).structure if i["instruction"] == name]


def test_the_image_runs_every_subcommand_as_a_non_root_user():
    parser = DockerfileParser(str(ROOT / "Dockerfile"))
    assert json.loads(instructions("ENTRYPOINT")[-1]["value"]) == ["footfall"]
    user = instructions("USER")[-1]["value"].split(":")[0]
    assert user.isdigit() and int(user) != 0
    assert set(get_command(cli).commands) >= STAGES  # one entry point, every stage a subcommand
    # every footfall setting the image sets is a real one (a typo would silently be ignored)
    known = {f"FOOTFALL_{name.upper()}" for name in FootfallSettings.model_fields}
    assert {k for k in parser.envs if k.startswith("FOOTFALL_")} <= known


def test_the_image_installs_from_the_lock_and_copies_what_exists():
    runs = " ".join(i["value"] for i in instructions("RUN"))
    assert "--require-hashes -r deploy/requirements-uv.txt" in runs and "uv sync --locked" in runs
    for copy in instructions("COPY"):
        if "--from=" in copy["value"]:
            continue
        *sources, _target = copy["value"].split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "!deploy/requirements-uv.txt" in ignored and ".venv" in ignored


def test_the_python_of_the_image_satisfies_requires_python():
    base = DockerfileParser(str(ROOT / "Dockerfile")).baseimage  # the final stage's, ARGs substituted
    version = tuple(int(part) for part in re.match(r"python:(\d+)\.(\d+)", base).groups())
    assert version >= (3, 11)


def test_compose_and_chart_set_only_settings_that_exist():
    """FOOTFALL_* variables in compose.yaml and the chart's templates name real settings (pydantic would ignore a
    misspelt one), apart from those of footfall api's and the collector's own configs."""
    known = {f"FOOTFALL_{name.upper()}" for name in FootfallSettings.model_fields} | {"FOOTFALL_WRITE_KEYS", "FOOTFALL_ADMIN_KEY"}
    compose = yaml.safe_load((ROOT / "deploy/compose/compose.yaml").read_text())
    used = set()
    for service in compose["services"].values():
        used |= {k for k in (service.get("environment") or {}) if k.startswith("FOOTFALL_")}
    for template in (ROOT / "deploy/helm/footfall/templates").glob("*"):
        used |= set(re.findall(r"name: (FOOTFALL_[A-Z_]+)", template.read_text()))
        used |= set(re.findall(r"\{ name: (FOOTFALL_[A-Z_]+)", template.read_text()))
    assert used, "no settings found: the test reads the wrong files"
    assert used <= known, used - known
