"""The full fault suite (marker `faults`) runs only when asked for: `make test-faults` (pytest -m faults).

`make test` runs plain `pytest`; without this, its collection of tests/ would also run every seed of the
full suite. The CI subset is marked `integration` and runs there as usual."""

from __future__ import annotations


def pytest_collection_modifyitems(config, items):
    if "faults" in (config.getoption("markexpr") or ""):
        return
    deselected = [item for item in items if item.get_closest_marker("faults")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("faults")]
