"""Alerting state in SQL: SQLite in the data directory by default, PostgreSQL by URL."""
