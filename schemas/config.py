"""Settings shared by every stage, read from the environment (documented in README.md).

Each stage gets one `FootfallSettings` object from the composition root, so tests can run
isolated pipelines side by side by changing the topic prefix and the database.
"""

from __future__ import annotations

import gc
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.envelope import DEFAULT_MAX_BYTES, DEFAULT_MAX_EVENTS, EnvelopeLimits
from schemas.topics import Topics


class FootfallSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FOOTFALL_", extra="ignore", frozen=True)

    # Kafka
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "FOOTFALL_KAFKA_BOOTSTRAP_SERVERS"),
    )
    topic_prefix: str = "footfall"
    partitions: int = Field(default=4, ge=1, le=1024)

    # ClickHouse: a server URL (http://user:pass@host:8123) or a chdb:///abs/path DSN; unset means the
    # embedded engine in <data_dir>/clickhouse.
    clickhouse_url: str | None = Field(default=None, validation_alias=AliasChoices("CLICKHOUSE_URL", "FOOTFALL_CLICKHOUSE_URL"))
    data_dir: Path = Path(".footfall")
    database: str = "footfall"
    # A ClickHouse cluster name (remote_servers): migrations then run ON CLUSTER with Replicated engines, and
    # events and sessions are sharded behind Distributed tables. Unset: one node (docs/operations.md).
    clickhouse_cluster: str | None = None

    # Collector
    collector_host: str = "127.0.0.1"
    collector_port: int = 8080
    collector_workers: int = Field(default=1, ge=1, le=64)
    # Accepted events wait this long for others bound for the same raw partition, then go as one envelope
    # (schemas.envelope); what it adds to a request's answer is in BENCHMARKS.md. 0: only the requests being
    # handled at the same moment share.
    collector_flush_seconds: float = Field(default=0.005, ge=0, le=1)
    # An envelope's limits, whichever comes first (below Kafka's default 1 MiB record size with room to spare).
    envelope_max_events: int = Field(default=DEFAULT_MAX_EVENTS, ge=1, le=100_000)
    envelope_max_bytes: int = Field(default=DEFAULT_MAX_BYTES, ge=1024, le=DEFAULT_MAX_BYTES)

    # Projector / read API (owns the embedded ClickHouse in `footfall run`)
    read_api_host: str = "127.0.0.1"
    read_api_port: int = 8090
    batch_max_rows: int = Field(default=10_000, ge=1)
    batch_max_seconds: float = Field(default=1.0, gt=0)
    # Profiles folded by the owners of the person-changes partitions (projections/person_owners.py), so any
    # number of projectors may run in one group; off: each projector folds its own batch's persons, which
    # is right for one projector only (the embedded engine, replays). docs/operations.md, "The projector".
    persons_partitioned: bool = False

    # Companies: link a user whose email domain is a company's domain (not free mail) to that company, flagged
    # derived (projections/companies.py).
    company_domain_membership: bool = False
    # ... only for users who sent through one of these sources (the sources with `company_domain_membership`
    # set: `footfall projector` and `footfall replay` fill it from the sources file; empty: the switch above).
    company_domain_sources: list[str] = Field(default_factory=list)

    # Management API (`footfall api`)
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_wait_timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    # Segment evaluator (`footfall segments`): every segment is re-evaluated this often; segments on profile
    # properties only also whenever the persons table changed (checked this often).
    segments_interval_seconds: float = Field(default=60.0, ge=1)
    segments_poll_seconds: float = Field(default=2.0, gt=0, le=60)
    segments_metrics_port: int = 9104  # /metrics and /readyz of `footfall segments` (0: none)
    # Webhooks (`footfall webhooks`, outbound/webhooks.py): tries per delivery, the backoff between them (exponential
    # from the first wait, capped, with jitter), each POST's timeout, how many persons' deliveries one webhook has in
    # flight at once, and the dispatcher's /metrics port (0: none).
    webhook_max_attempts: int = Field(default=6, ge=1, le=50)
    webhook_backoff_seconds: float = Field(default=1.0, gt=0)
    webhook_backoff_max_seconds: float = Field(default=300.0, gt=0)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    webhook_concurrency: int = Field(default=8, ge=1, le=256)
    webhooks_metrics_port: int = 9103
    # A worker that has not polled for this long leaves its group; while a batch's retries run it polls its paused
    # partitions every second, so this only catches a worker that is stuck.
    webhook_max_poll_interval_seconds: float = Field(default=300.0, ge=6)

    # Processor
    processor_store: str = "memory://"  # or "rocksdb://" (rocksdict) for state larger than memory
    processor_metrics_port: int = 9101
    processor_metrics_host: str = "127.0.0.1"  # 0.0.0.0 in a container, for Prometheus to scrape
    # Kafka static group membership (group.instance.id, e.g. a StatefulSet pod's name): a worker that restarts
    # within the session timeout gets its partitions back without a rebalance of the whole group.
    processor_instance_id: str | None = None
    session_gap_seconds: float = Field(default=30 * 60, gt=0)
    allowed_lateness_seconds: float = Field(default=2 * 3600, ge=0)
    session_tick_seconds: float = Field(default=10.0, gt=0)
    # The sessionizer takes raw records (envelopes or single events) in batches of up to this many, or whatever
    # came within this time; every agent handles a batch's events in slices of at most processor_slice_events,
    # yielding to the event loop between slices, so a batch of full envelopes never holds the loop for seconds.
    processor_batch_max: int = Field(default=1000, ge=1)
    processor_batch_seconds: float = Field(default=0.05, gt=0)
    processor_slice_events: int = Field(default=500, ge=1)
    # A worker whose owned partitions hold waiting records it has not moved on for this long restarts itself.
    processor_stall_seconds: float = Field(default=30.0, ge=5)
    consumer_session_timeout_seconds: float = Field(default=10.0, ge=6, le=300)
    # How often a processor refreshes topic metadata. The group leader assigns only the partitions its metadata
    # knows: a topic missing from it (just created, or a broker that restarted and has not loaded it yet) gets
    # no owner until a refresh shows it and the leader asks for a new assignment. aiokafka's default is 5 minutes.
    processor_metadata_refresh_seconds: float = Field(default=10.0, ge=1, le=300)

    # Front-end assets installed from npm by `make web` (web/package.json): the console's CSS and scripts, and
    # analytics-next's standalone bundle that the collector serves to sites.
    web_assets_dir: Path = Path(__file__).resolve().parents[1] / "web" / "node_modules"

    # Python's cyclic garbage collector runs after this many net allocations (CPython's default: 700).
    gc_threshold: int = Field(default=50_000, ge=700)

    @property
    def topics(self) -> Topics:
        return Topics(prefix=self.topic_prefix, partitions=self.partitions)

    @property
    def envelope_limits(self) -> EnvelopeLimits:
        return EnvelopeLimits(max_events=self.envelope_max_events, max_bytes=self.envelope_max_bytes)

    @property
    def clickhouse_dsn(self) -> str:
        """`CLICKHOUSE_URL` when set, else the embedded engine in `<data_dir>/clickhouse`."""
        if self.clickhouse_url:
            return self.clickhouse_url
        return f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    @property
    def embedded_clickhouse(self) -> bool:
        return self.clickhouse_dsn.startswith("chdb:")


def tune_garbage_collector(settings: FootfallSettings) -> None:
    """Every stage allocates a few dozen short-lived objects per event and makes almost no reference cycles, so
    CPython's default (a collection every 700 net allocations, i.e. every few events) spent about a tenth of
    the projector's time finding nothing. Run it far less often, and never rescan what start-up built."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(settings.gc_threshold, older, oldest)
