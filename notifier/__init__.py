"""Incident notification delivery engine, event-sourced on Apache Kafka."""
