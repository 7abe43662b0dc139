"""`footfall lag` asks a partition again while its leader moves, and only then."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException

from footfall.lag import _leader_moving


def test_a_moving_leader_is_asked_again_and_other_failures_are_not():
    assert _leader_moving(KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION)))
    assert _leader_moving(KafkaException(KafkaError(KafkaError.LEADER_NOT_AVAILABLE)))
    assert not _leader_moving(KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)))
    assert not _leader_moving(ValueError("not Kafka"))
