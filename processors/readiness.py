"""Is this processor worker ready: has it joined its consumer group and recovered its tables since the last
rebalance? What an operator (and `footfall run`) watches at GET /readyz next to the worker's metrics.

faust counts rebalances as they start (`rebalancing_count`) and signals `on_rebalance_complete` once a
generation's tables are recovered and its streams are about to resume; a worker is ready when the latest
generation got that signal and neither a rebalance nor a recovery is under way.
"""

from __future__ import annotations

import faust


class ProcessorReadiness:
    def __init__(self, app: faust.App):
        self.app = app
        self.completed_generation = 0  # the rebalance count at the last completed recovery
        app.on_rebalance_complete.connect(self._on_rebalance_complete)

    async def _on_rebalance_complete(self, _sender, **_kwargs) -> None:
        self.completed_generation = self.app.rebalancing_count

    def __call__(self) -> tuple[bool, dict[str, str]]:
        app = self.app
        joined = app.rebalancing_count > 0 and not app.rebalancing
        recovered = joined and self.completed_generation == app.rebalancing_count and not app.in_recovery
        checks = {
            "consumer_group": "joined" if joined else "joining",
            "tables": "recovered" if recovered else "recovering" if joined else "waiting for the group",
        }
        return recovered, checks
