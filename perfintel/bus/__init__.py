"""The bus between process roles: ingest publishes stored batches, workers score them.

``Bus`` (``base``) with ``MemoryBus`` and ``RedisBus``; the batch encoding
(``codec``); series to shards (``sharding``); the ingest side (``publish``);
the worker (``worker``) and its checkpoints (``checkpoint``).
"""
