"""Projections: Kafka → ClickHouse tables, and the read models served from them."""
