"""Kafka → the outside world: the webhook dispatcher (`footfall webhooks`)."""
