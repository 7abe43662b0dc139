"""footfall's Grafana dashboard, built with grafana-foundation-sdk (not hand-typed JSON).

    python deploy/monitoring/dashboard.py          # writes deploy/helm/footfall/files/dashboards/footfall.json
    python deploy/monitoring/dashboard.py --check  # fails when that file is not what this builds

The JSON is committed because compose mounts it and the chart ships it; `make validate-deploy` checks it is current.
One row per stage, in the order data moves: collector, Kafka lag, processors, projector.
"""

from __future__ import annotations

import itertools
import json
import string
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

OUTPUT = Path(__file__).resolve().parents[1] / "helm" / "footfall" / "files" / "dashboards" / "footfall.json"
PROMETHEUS = DataSourceRef(type_val="prometheus", uid="${datasource}")
_panel_ids = itertools.count(1)


def query(expr: str, legend: str = "") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend)


def graph(title: str, unit: str, *queries: prometheus.Dataquery, description: str = "", width: int = 12) -> timeseries.Panel:
    panel = timeseries.Panel().id(next(_panel_ids)).title(title).unit(unit).datasource(PROMETHEUS).span(width).height(8)
    panel = panel.fill_opacity(10)
    if description:
        panel = panel.description(description)
    for ref, target in zip(string.ascii_uppercase, queries, strict=False):
        panel = panel.with_target(target.ref_id(ref))
    return panel


def single(title: str, unit: str, expr: str, description: str) -> stat.Panel:
    return (
        stat.Panel()
        .id(next(_panel_ids))
        .title(title)
        .unit(unit)
        .datasource(PROMETHEUS)
        .span(6)
        .height(4)
        .description(description)
        .with_target(query(expr).ref_id("A"))
    )


def row(title: str) -> dashboard.Row:
    return dashboard.Row(title).id(next(_panel_ids))


def build() -> dashboard.Dashboard:
    return (
        dashboard.Dashboard("footfall")
        .uid("footfall-overview")
        .tags(["footfall"])
        .refresh("30s")
        .time("now-3h", "now")
        .timezone("utc")
        .with_variable(dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
        .with_row(row("At a glance"))
        .with_panel(
            single(
                "Events accepted / s",
                "reqps",
                "sum(rate(footfall_collector_events_accepted_total[5m]))",
                "Events the collector wrote to the raw topic (acknowledged by Kafka)",
            )
        )
        .with_panel(
            single(
                "Freshness p99",
                "s",
                "histogram_quantile(0.99, sum by (le) (rate(footfall_projector_freshness_seconds_bucket[5m])))",
                "From the collector's received_at to the event's row accepted by ClickHouse",
            )
        )
        .with_panel(
            single(
                "Consumer lag",
                "short",
                'sum(kafka_consumergroup_lag{consumergroup=~"footfall-.+"})',
                "Messages waiting for the processors and the projector",
            )
        )
        .with_panel(
            single(
                "Processor restarts (1 h)",
                "short",
                "sum(increase(footfall_processor_restarts_total[1h]))",
                "Worker starts after an earlier run, any reason",
            )
        )
        .with_row(row("Collector"))
        .with_panel(
            graph("Requests by status", "reqps", query("sum by (status) (rate(footfall_collector_requests_total[5m]))", "{{status}}"))
        )
        .with_panel(
            graph(
                "Events accepted and refused",
                "reqps",
                query("sum by (type) (rate(footfall_collector_events_accepted_total[5m]))", "accepted {{type}}"),
                query("sum by (field) (rate(footfall_collector_events_rejected_total[5m]))", "refused: {{field}}"),
            )
        )
        .with_panel(
            graph(
                "Kafka produce latency",
                "s",
                query("histogram_quantile(0.5, sum by (le) (rate(footfall_collector_produce_seconds_bucket[5m])))", "p50"),
                query("histogram_quantile(0.99, sum by (le) (rate(footfall_collector_produce_seconds_bucket[5m])))", "p99"),
            )
        )
        .with_panel(graph("Producer queue", "short", query("sum(footfall_collector_producer_queue_depth)", "records waiting")))
        .with_row(row("Kafka"))
        .with_panel(
            graph(
                "Consumer lag by group",
                "short",
                query('sum by (consumergroup) (kafka_consumergroup_lag{consumergroup=~"footfall-.+"})', "{{consumergroup}}"),
                description="KEDA scales the processors and the projector on this lag",
            )
        )
        .with_panel(
            graph(
                "Records written by topic",
                "reqps",
                query('sum by (topic) (rate(kafka_topic_partition_current_offset{topic=~"footfall\\\\..+"}[5m]))', "{{topic}}"),
            )
        )
        .with_row(row("Processors"))
        .with_panel(
            graph(
                "Lag per partition",
                "short",
                query("footfall_processor_consumer_lag", "{{topic}}[{{partition}}] {{instance}}"),
                description="Each worker's own view, refreshed every FOOTFALL_PROCESSOR_STALL_SECONDS / 2",
            )
        )
        .with_panel(
            graph("Restarts by reason", "short", query("sum by (reason) (increase(footfall_processor_restarts_total[30m]))", "{{reason}}"))
        )
        .with_panel(
            graph(
                "Late, duplicate and poison events",
                "reqps",
                query("sum(rate(footfall_processor_late_events_total[5m]))", "late"),
                query("sum(rate(footfall_processor_duplicate_events_total[5m]))", "duplicates"),
                query("sum by (schema) (rate(footfall_processor_poison_messages_total[5m]))", "poison {{schema}}"),
            )
        )
        .with_panel(graph("Sessions ended", "reqps", query("sum(rate(footfall_processor_sessions_ended_total[5m]))", "sessions / s")))
        .with_row(row("Projector"))
        .with_panel(
            graph("Rows written by table", "rowsps", query("sum by (table) (rate(footfall_projector_rows_written_total[5m]))", "{{table}}"))
        )
        .with_panel(
            graph(
                "Freshness (received_at → inserted)",
                "s",
                query("histogram_quantile(0.5, sum by (le) (rate(footfall_projector_freshness_seconds_bucket[5m])))", "p50"),
                query("histogram_quantile(0.99, sum by (le) (rate(footfall_projector_freshness_seconds_bucket[5m])))", "p99"),
            )
        )
        .with_panel(
            graph(
                "Insert latency p99 by table",
                "s",
                query("histogram_quantile(0.99, sum by (le, table) (rate(footfall_projector_insert_seconds_bucket[5m])))", "{{table}}"),
            )
        )
        .with_panel(
            graph(
                "Batch size",
                "short",
                query(
                    "sum(rate(footfall_projector_batch_messages_sum[5m])) / sum(rate(footfall_projector_batch_messages_count[5m]))",
                    "messages per batch",
                ),
                query("sum(rate(footfall_projector_refused_writes_total[5m]))", "refused writes / s"),
            )
        )
        .with_row(row("Management API"))
        .with_panel(
            graph("Requests by status", "reqps", query("sum by (status) (rate(footfall_api_http_requests_total[5m]))", "{{status}}"))
        )
        .with_panel(
            graph(
                "Latency p99 by route",
                "s",
                query(
                    "histogram_quantile(0.99, sum by (le, handler) (rate(footfall_api_http_request_duration_seconds_bucket[5m])))",
                    "{{handler}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Commands published by topic",
                "reqps",
                query("sum by (topic) (rate(footfall_api_commands_published_total[5m]))", "{{topic}}"),
            )
        )
        .with_panel(
            graph(
                "Write to readable (?wait=true)",
                "s",
                query("histogram_quantile(0.99, sum by (le) (rate(footfall_api_write_to_readable_seconds_bucket[5m])))", "p99"),
                query('sum(rate(footfall_api_waits_total{outcome="timed_out"}[5m]))', "timed out / s"),
            )
        )
    )


def render() -> str:
    global _panel_ids
    _panel_ids = itertools.count(1)
    return json.dumps(build().build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} is not what deploy/monitoring/dashboard.py builds: run it and commit the result", file=sys.stderr)
            return 1
        print(f"{OUTPUT.name}: current ({len(json.loads(text)['panels'])} panels)")
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
