"""Shared core of live-viewer-profiles: configuration, the enriched-event layout, the event
model, Iglu schemas, pseudonyms, Kafka/DynamoDB plumbing and the `lvp` command line."""

__version__ = "0.1.0"
