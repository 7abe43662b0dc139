"""Every Kafka topic footfall uses: its name, key and partition count (see ARCHITECTURE.md)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    key: str
    retention_ms: int = -1  # raw events are the source of truth: kept forever unless an operator says otherwise
    compacted: bool = False

    @property
    def config(self) -> dict[str, str]:
        config = {"retention.ms": str(self.retention_ms)}
        if self.compacted:
            config["cleanup.policy"] = "compact"
        return config


@dataclass(frozen=True)
class Topics:
    prefix: str = "footfall"
    partitions: int = 4

    @property
    def raw(self) -> TopicSpec:
        """Accepted tracking calls, exactly as the collector acknowledged them."""
        return TopicSpec(f"{self.prefix}.raw", self.partitions, key="device key (anonymousId, else userId)")

    @property
    def enriched(self) -> TopicSpec:
        """Events after the stream processors (session and person ids attached)."""
        return TopicSpec(f"{self.prefix}.enriched", self.partitions, key="device key")

    @property
    def dead_letter(self) -> TopicSpec:
        """Bad rows from every stage, with their reason; kept forever so they can be fixed and replayed."""
        return TopicSpec(f"{self.prefix}.dead-letter", self.partitions, key="source id")

    def all(self) -> list[TopicSpec]:
        return [self.raw, self.enriched, self.dead_letter]
