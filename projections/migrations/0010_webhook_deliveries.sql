-- Webhook deliveries (issue 17): one row per attempt to deliver one change to one webhook, from the
-- webhook-deliveries topic (the dispatcher, `footfall webhooks`, records them). A dead_lettered row is the last
-- failed try and keeps the change (JSON) so it can be sent again. A redelivered record collapses by the key.
CREATE TABLE IF NOT EXISTS {db}.webhook_deliveries
(
    webhook_id    String,
    change_id     String,
    attempt       UInt16,
    status        LowCardinality(String),
    http_status   UInt16,
    error         String,
    duration_ms   Float64,
    at            DateTime64(3, 'UTC'),
    person_id     String,
    kind          LowCardinality(String),
    url           String,
    change        String
)
ENGINE = ReplacingMergeTree
ORDER BY (webhook_id, change_id, attempt)
