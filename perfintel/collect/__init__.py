"""Collecting metrics: host metrics read from ``/proc`` (``host``) and Prometheus-style
scraping of HTTP targets (``scrape``), both handing ``SampleBatch``es to an async sink.

Import from the submodules; nothing is re-exported here.
"""
