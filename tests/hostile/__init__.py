"""Hostile input for the collector, kept as data (corpus.py); tests/integration/test_collector_hostile.py runs it."""
