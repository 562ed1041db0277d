"""The rule engine: Prometheus rule files and perfintel's rule kinds, evaluated over the store.

Pure core: ``files`` (parsing, validation with file/line/reason), ``template``
(Go-template subset), ``lifecycle`` (pending/firing/resolved, hysteresis,
flapping, what to send), ``kinds`` (anomaly and predictive kinds), ``plan``
(what a rule reads; engine-free thresholds). Edges: ``group`` (evaluation
against a store and a sink), ``service`` (loading, reloading, scheduling),
``promtest`` and ``backtest`` (``perfintel rules test`` / ``backtest``).
Alerts leave through ``perfintel.alerting.model.AlertSink``.
"""
