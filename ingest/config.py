"""The collector's own settings, from the environment (FOOTFALL_...); the pipeline-wide ones are in
`schemas.config.FootfallSettings`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest.sources import RateLimit, SourceRegistry


class CollectorConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FOOTFALL_", extra="ignore", frozen=True)

    # Write keys: a JSON file of sources, else "key=source,key2=source2".
    sources_file: Path | None = None
    write_keys: str = "dev-write-key=default"

    # Comma-separated addresses or CIDRs of proxies whose X-Forwarded-For / X-Forwarded-Proto are believed.
    trusted_proxies: str = ""

    # How long a request waits for Kafka's acknowledgement before it is answered 503.
    collector_ack_timeout_s: float = Field(default=10.0, gt=0)
    collector_retry_after_s: int = Field(default=5, ge=1)
    # Slow clients (slowloris): a request's headers must arrive within this time (ingest.server), and its
    # body within this time plus a second per KB received (ingest.body); else 408 and the connection closes.
    collector_header_timeout_s: float = Field(default=20.0, gt=0)
    collector_body_timeout_s: float = Field(default=20.0, gt=0)

    # Default flood control per worker process (a source may set its own). 0 turns the write-key limit off.
    source_events_per_second: float = Field(default=0, ge=0)
    source_burst: int = Field(default=10_000, ge=1)
    device_events_per_second: float = Field(default=200, gt=0)
    device_burst: int = Field(default=2_500, ge=1)

    # Dynamic configs: a repeated exposure of the same (person, config, variant, version) is written once per
    # this many seconds per worker (ingest.configs).
    config_exposure_window_s: float = Field(default=3600.0, gt=0)

    # The host analytics.js is told to send to (settings endpoint), e.g. "collector.example.com/v1".
    public_api_host: str | None = None

    def sources(self) -> SourceRegistry:
        if self.sources_file:
            return SourceRegistry.from_file(self.sources_file)
        return SourceRegistry.from_spec(self.write_keys)

    @property
    def source_rate_limit(self) -> RateLimit | None:
        if not self.source_events_per_second:
            return None
        return RateLimit(events_per_second=self.source_events_per_second, burst=self.source_burst)

    @property
    def device_rate_limit(self) -> RateLimit:
        return RateLimit(events_per_second=self.device_events_per_second, burst=self.device_burst)

    @property
    def trusted_proxy_list(self) -> list[str]:
        return [item.strip() for item in self.trusted_proxies.split(",") if item.strip()]
