"""Alerting: rules that watch the store, and the pipeline that turns alerts into notifications.

Two halves meet at ``model.AlertSink``, the same boundary as Prometheus and
Alertmanager: the rule engine (``rules/``) evaluates rules and sends ``Alert``
updates; the notification pipeline (routing, grouping, incidents, escalation,
channels) receives them, as it does alerts POSTed to ``/api/v2/alerts`` by an
external Prometheus or vmalert. State of both halves lives in SQL (``state/``).
"""
