"""The collector: the Snowplow tracker protocol in, validated and pseudonymized enriched events out
to Kafka. ``collector.app.create_app(settings)`` builds the Starlette app; ``lvp collector`` runs it."""

from lvp import __version__

#: ``v_collector`` / ``v_etl`` of every enriched event we write.
COLLECTOR_VERSION = f"lvp-collector-{__version__}"
ETL_VERSION = f"lvp-enrich-{__version__}"
