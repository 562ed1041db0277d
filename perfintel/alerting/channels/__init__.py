"""Notification channels: each a small class registered under the entry-point group
``perfintel.channels`` (the built-ins too, see pyproject.toml), so a third-party
package adds a channel the same way."""
