"""The notification pipeline service: the core, its SQL state and the outbox, on threads.

``Pipeline`` is the ``AlertSink`` the rule engine sends to (and the
``/api/v2/alerts`` handler too). ``send`` only records the alerts and wakes the
dispatcher thread, which ticks the core when something is due, saves the
changed state and the new notifications in one transaction, and wakes the
delivery thread. Every method that reads the clock takes it from the injected
``clock``; with ``background=False`` no thread runs and a caller drives
``tick``/``deliver`` itself (a replay at simulated time, or a test).

Thread-safety: one lock guards the core; SQL writes of the core's changes
happen under it, deliveries do not hold it.

Single notifier: with ``leases`` (several processes on one shared database),
only the holder of the ``notifier`` lease ticks and delivers, and its writes
are fenced by the lease's token (``state.leases``). A process that gains the
lease reloads the state from the database, then adds the alerts it received
meanwhile; one that loses it stops at its next round.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import Engine

from perfintel.alerting.amconfig import (
    default_config,
    load_config,
    parse_policy,
    parse_receiver,
)
from perfintel.alerting.channels.base import Channel, ChannelContext, load_channels
from perfintel.alerting.dispatcher import NotifyCore
from perfintel.alerting.incidents import CausesHook, Incident, Relatedness, RootCauseHook
from perfintel.alerting.model import Alert
from perfintel.alerting.notification import Notification
from perfintel.alerting.notify_config import EscalationPolicy, Integration, NotifyConfig, Receiver
from perfintel.alerting.outbox import Links, OutboxWorker
from perfintel.alerting.signing import ack_url, verify
from perfintel.alerting.silences import Silence
from perfintel.alerting.state.database import default_url, open_database
from perfintel.alerting.state.inbox import AlertInbox
from perfintel.alerting.state.leases import Lease, LeaseManager
from perfintel.alerting.state.notify_store import NotifyStore
from perfintel.alerting.summary import ActiveSummary, summarise
from perfintel.alerting.templates import Renderer
from perfintel.errors import BadInputError, NotFoundError, OverloadedError, PerfintelError

log = logging.getLogger(__name__)


class Pipeline:
    def __init__(
        self,
        engine: Engine,
        config: NotifyConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        external_url: str = "http://127.0.0.1:9470",
        signing_key: bytes | None = None,
        channels: Mapping[str, Channel] | None = None,
        related: Relatedness | None = None,
        root_cause: RootCauseHook | None = None,
        causes: CausesHook | None = None,
        http: httpx.Client | None = None,
        background: bool = True,
        max_alerts: int = 100_000,
        delivery_workers: int = 4,
        delivery_timeout: float = 10.0,
        delivery_max_age: float = 86400.0,
        config_path: Path | None = None,
        extensions_path: Path | None = None,
        leases: LeaseManager | None = None,
    ) -> None:
        self.engine = engine
        self.leases = leases
        self.lease: Lease | None = None  # the notifier lease while held (with ``leases``)
        self._related, self._root_cause = related, root_cause
        self._held_back: dict[str, Alert] = {}  # alerts received while not the notifier
        #: with leases: what this process's rule groups send reaches the notifier through it
        self.inbox = AlertInbox(engine, clock=clock) if leases is not None else None
        self.store = NotifyStore(engine)
        self.clock = clock
        self.external_url = external_url.rstrip("/")
        self.config_path = config_path
        self.extensions_path = extensions_path
        self.max_alerts = max_alerts
        self.background = background
        self.lock = threading.RLock()
        self._wake = threading.Condition(self.lock)
        self._deliver_wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.config = config or default_config()
        self.core = NotifyCore(self.config, related=related, root_cause=root_cause, causes=causes)
        self.renderer = Renderer(
            self.config.extensions.default_template, self.config.extensions.receiver_templates
        )
        self._signing_key = signing_key
        self._own_http = http is None
        self.http = http or httpx.Client(timeout=delivery_timeout, follow_redirects=False)
        self.worker = OutboxWorker(
            self.store,
            channels if channels is not None else load_channels(),
            self._integration,
            lambda n, links: self.renderer.render(
                n,
                ack_url=links.ack_url,
                incident_url=links.incident_url,
                external_url=links.external_url,
            ),
            self._links,
            ChannelContext(self.http, self.config.global_, delivery_timeout),
            max_age=delivery_max_age,
            workers=delivery_workers,
        )
        self.started_at = clock()
        self.last_reload_error = ""
        self.ticks = 0
        #: what is active now, replaced whole after every round that changed it (any thread reads)
        self.summary = ActiveSummary()
        self.summary_version = 0
        self._followed: dict[str, Any] | None = None  # the stored summary last followed
        #: called with the new summary when it changed (the live stream, the overview)
        self.listeners: list[Callable[[ActiveSummary], None]] = []

    # -- life cycle ------------------------------------------------------------------

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> Pipeline:
        a = settings.alerting
        config = (
            load_config(a.alertmanager_config, a.notify_extensions)
            if a.alertmanager_config
            else default_config()
        )
        engine = open_database(a.database_url or default_url(Path(settings.data_dir)))
        key = a.signing_key.encode() if a.signing_key else None
        return cls(
            engine,
            config,
            external_url=a.external_url,
            signing_key=key,
            max_alerts=a.max_alerts,
            delivery_workers=a.delivery_workers,
            delivery_timeout=a.delivery_timeout,
            delivery_max_age=a.delivery_max_age,
            config_path=a.alertmanager_config,
            extensions_path=a.notify_extensions,
            **kwargs,
        )

    def start(self) -> None:
        now = self.clock()
        with self.lock:
            self.store.load(self.core, now)
            self._load_objects()
            if self._signing_key is None:
                meta = self.store.objects("meta").get("signing_key")
                if meta is None:
                    meta = {"hex": os.urandom(32).hex()}
                    self.store.put_object("meta", "signing_key", meta, now)
                self._signing_key = bytes.fromhex(meta["hex"])
        for w in self.config.warnings:
            log.warning("alertmanager config: %s", w)
        if self.background:
            for target, name in (
                (self._tick_loop, "perfintel-notify"),
                (self._deliver_loop, "perfintel-outbox"),
            ):
                t = threading.Thread(target=target, name=name, daemon=True)
                t.start()
                self._threads.append(t)

    def close(self) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        self._deliver_wake.set()
        for t in self._threads:
            t.join(timeout=30)
        self._threads.clear()
        self.worker.close()
        try:
            self.release()
        except Exception:  # the TTL hands it over anyway
            log.exception("cannot release the notifier lease")
        if self._own_http:
            self.http.close()
        self.engine.dispose()

    # -- the AlertSink ----------------------------------------------------------------

    def send(self, alerts: Sequence[Alert]) -> None:
        with self._wake:
            new = sum(1 for a in alerts if a.fingerprint not in self.core.alerts)
            if len(self.core.alerts) + new > self.max_alerts:
                raise OverloadedError(
                    f"the notification pipeline holds {len(self.core.alerts)} alerts "
                    f"(alerting.max_alerts = {self.max_alerts}); refusing {new} new ones"
                )
            self.core.receive(alerts, self.clock())
            forward = self.leases is not None and self.lease is None
            if forward:
                for a in alerts[: self.max_alerts]:
                    self._held_back[a.fingerprint] = a
            self._wake.notify_all()
        if forward and self.inbox is not None:
            # another process notifies: it takes these from the shared inbox (a failure
            # here reaches the rule engine, which sends them again next evaluation)
            self.inbox.put(alerts)

    # -- driving ----------------------------------------------------------------------

    def tick(self, now: float | None = None) -> list[Notification]:
        """One dispatcher round: decide, persist state and notifications together
        (nothing without the notifier lease, when there are leases)."""
        if self.leases is not None and self.lease is None:
            return []
        with self.lock:
            at = self.clock() if now is None else now
            if self.inbox is not None and self.lease is not None:
                forwarded = self.inbox.take(self.lease)  # fenced by the notifier lease
                if forwarded:
                    self.core.receive(forwarded, at)
            notes = self.core.tick(at)
            self.store.save(self.core, notes, self._integrations, at)
            self.ticks += 1
            summary = summarise(self.core, at)
            changed = summary != self.summary
            if changed:
                self.summary = summary
                self.summary_version += 1
        if notes:
            self._deliver_wake.set()
        if changed:
            self._tell(summary)
            if self.leases is not None:  # the other processes' dashboards show it too
                try:
                    self.store.save_summary(summary.to_state(), at)
                except PerfintelError as exc:
                    log.warning("cannot store the alert summary: %s", exc)
        return notes

    def _tell(self, summary: ActiveSummary) -> None:
        for listener in list(self.listeners):
            try:
                listener(summary)
            except Exception:  # a listener must not stop the dispatcher
                log.exception("alert summary listener failed")

    def follow_summary(self) -> bool:
        """Not the notifier: take the active summary the notifier stored (the dashboard's
        alerts, the live stream's ``alerts`` topic); whether it changed."""
        doc = self.store.load_object("meta", "summary")
        if doc is None or doc == self._followed:
            return False
        self._followed = doc
        summary = ActiveSummary.from_state(doc)
        with self.lock:
            self.summary = summary
            self.summary_version += 1
        self._tell(summary)
        return True

    def deliver(self, now: float | None = None) -> int:
        if self.leases is not None and self.lease is None:
            return 0  # only the notifier delivers
        return self.worker.run_once(self.clock() if now is None else now)

    #: the lease is renewed when less than this share of its TTL is left
    RENEW_AT = 0.5

    def notifier(self) -> bool:
        """Whether this process may notify now (always, without ``leases``); acquires,
        renews or drops the ``notifier`` lease as due."""
        if self.leases is None:
            return True
        with self.lock:
            lease, now = self.lease, self.clock()
            if lease is not None and lease.expires_at - now > self.RENEW_AT * self.leases.ttl:
                return True
            new = self.leases.acquire("notifier") if lease is None else self.leases.renew(lease)
            if new is not None and lease is None:
                log.info("notifier lease acquired (token %d): reloading the state", new.token)
                self.core = NotifyCore(
                    self.config, related=self._related, root_cause=self._root_cause
                )
                self._load_objects()
                self.store.load(self.core, now)
                self.core.receive(list(self._held_back.values()), now)
                self._held_back.clear()
            elif new is None and lease is not None:
                log.warning("notifier lease lost (token %d): another process notifies", lease.token)
            self.lease = self.store.lease = new
            return new is not None

    def release(self) -> None:
        """Hand the notifier lease back (on close), so a successor need not wait the TTL."""
        with self.lock:
            if self.leases is not None and self.lease is not None:
                self.leases.release(self.lease)
                self.lease = self.store.lease = None

    def _tick_loop(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.notifier():
                    self.follow_summary()
                    self._stop.wait(self.leases.ttl / 3 if self.leases else 1.0)
                    continue
                self.tick()
                with self._wake:
                    now = self.clock()
                    wait = min(max(self.core.next_due(now) - now, 0.01), 1.0)
                    if self.leases is not None:
                        # renewed once RENEW_AT of the TTL is left: look several times in
                        # that span (a 2 s TTL was lost by waiting the whole 1 s of it)
                        wait = min(wait, self.RENEW_AT * self.leases.ttl / 3)
                    self._wake.wait(wait)
            except Exception:
                log.exception("notification dispatcher round failed; retrying in 1 s")
                self._stop.wait(1.0)

    def _deliver_loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.lease is None and self.leases is not None:
                    self._stop.wait(0.2)
                    continue
                n = self.deliver()
                if n:
                    continue
                nxt = self.store.next_attempt()
                wait = 1.0 if nxt is None else min(max(nxt - self.clock(), 0.0), 1.0)
                self._deliver_wake.wait(wait)
                self._deliver_wake.clear()
            except Exception:
                log.exception("outbox round failed; retrying in 1 s")
                self._stop.wait(1.0)

    # -- configuration ----------------------------------------------------------------

    def reload(self) -> NotifyConfig:
        """Re-read the configured file; on error raise and keep the running configuration."""
        if self.config_path is None:
            return self.config
        try:
            config = load_config(self.config_path, self.extensions_path)
        except Exception as exc:
            self.last_reload_error = str(exc)
            log.error("alertmanager config reload failed, keeping the running one: %s", exc)
            raise
        self.apply(config)
        self.last_reload_error = ""
        return config

    def apply(self, config: NotifyConfig) -> None:
        with self._wake:
            self.config = config
            self._load_objects()
            self.renderer = Renderer(
                config.extensions.default_template, config.extensions.receiver_templates
            )
            self.worker.context.global_ = config.global_
            self._wake.notify_all()
        log.info("alertmanager config loaded from %s", config.path or "(defaults)")

    def _load_objects(self) -> None:
        receivers: dict[str, Receiver] = {}
        for name, data in self.store.objects("receiver").items():
            try:
                receivers[name] = parse_receiver(data, self.config.global_, "(api)")
            except BadInputError as exc:  # a file reload can invalidate an API receiver
                log.warning("API receiver %s ignored: %s", name, exc)
        policies = []
        for _name, data in self.store.objects("policy").items():
            try:
                policies.append(parse_policy(data))
            except BadInputError as exc:
                log.warning("API escalation policy ignored: %s", exc)
        self.core.configure(self.config, receivers, policies)

    def _integrations(self, receiver: str) -> Sequence[Integration]:
        rec = self.core.receivers.get(receiver)
        return rec.integrations if rec else ()

    def _integration(self, receiver: str, name: str) -> Integration | None:
        with self.lock:
            return next((i for i in self._integrations(receiver) if i.name == name), None)

    def _links(self, n: Notification) -> Links:
        key = self._signing_key or b""
        expires = int(n.created_at + self.config.extensions.ack_link_ttl)
        return Links(
            ack_url=ack_url(self.external_url, key, n.incident_id, expires),
            incident_url=f"{self.external_url}/incidents/{n.incident_id}",
            external_url=self.external_url,
        )

    # -- operator actions ---------------------------------------------------------------

    def acknowledge(self, incident_id: str, by: str) -> Incident:
        with self.lock:
            inc = self.core.acknowledge(incident_id, by, self.clock())
            self.tick()
            return inc

    def acknowledge_signed(self, incident_id: str, expires: int, sig: str) -> Incident:
        verify(self._signing_key or b"", incident_id, expires, sig, self.clock())
        return self.acknowledge(incident_id, "signed link")

    def resolve(self, incident_id: str, by: str) -> Incident:
        with self.lock:
            inc = self.core.resolve_incident(incident_id, by, self.clock())
            self.tick()
            return inc

    def put_silence(self, silence: Silence) -> Silence:
        with self._wake:
            if (
                silence.id in self.core.silences
                and self.core.silences[silence.id].state(self.clock()) == "expired"
            ):
                raise BadInputError(f"silence {silence.id} has expired and cannot be updated")
            self.core.put_silence(silence)
        self.tick()
        return silence

    def expire_silence(self, silence_id: str) -> Silence:
        with self._wake:
            s = self.core.silences.get(silence_id)
            if s is None:
                raise NotFoundError(f"silence {silence_id} not found")
            s = s.expired(self.clock())
            self.core.put_silence(s)
        self.tick()
        return s

    def put_receiver(self, data: Mapping[str, Any]) -> Receiver:
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise BadInputError("a receiver needs a name")
        if name in self.config.receivers:
            raise BadInputError(
                f"receiver {name!r} is defined in the configuration file; edit it there"
            )
        rec = parse_receiver(data, self.config.global_)
        with self.lock:
            self.store.put_object("receiver", name, dict(data), self.clock())
            self._load_objects()
        return rec

    def delete_receiver(self, name: str) -> None:
        with self.lock:
            if not self.store.delete_object("receiver", name):
                raise NotFoundError(f"receiver {name!r} was not created through the API")
            self._load_objects()

    def put_policy(self, data: Mapping[str, Any]) -> EscalationPolicy:
        pol = parse_policy(data)
        with self.lock:
            for level in pol.levels:
                for r in level.receivers:
                    if r not in self.core.receivers:
                        raise BadInputError(
                            f"escalation policy {pol.name!r}: undefined receiver {r!r}"
                        )
            if any(p.name == pol.name for p in self.config.extensions.escalation_policies):
                raise BadInputError(
                    f"escalation policy {pol.name!r} is defined in the configuration file"
                )
            self.store.put_object("policy", pol.name, dict(data), self.clock())
            self._load_objects()
        return pol

    def delete_policy(self, name: str) -> None:
        with self.lock:
            if not self.store.delete_object("policy", name):
                raise NotFoundError(f"escalation policy {name!r} was not created through the API")
            self._load_objects()


def start_pipeline(
    settings: Any,
    clock: Callable[[], float] = time.time,
    *,
    related: Relatedness | None = None,
    root_cause: RootCauseHook | None = None,
    causes: CausesHook | None = None,
    leases: LeaseManager | None = None,
) -> Pipeline:
    """Build and start the pipeline from the settings (SIGHUP: ``perfintel.api.reload``).

    ``related``, ``root_cause`` and ``causes`` are the analysis hooks (series
    that move together, which alert's series changed first, the likely causes
    kept on an incident when it opens); without them incidents use labels,
    dependencies, storms and alert timing.
    """
    pipeline = Pipeline.from_settings(
        settings,
        clock=clock,
        related=related,
        root_cause=root_cause,
        causes=causes,
        leases=leases,
    )
    pipeline.start()
    return pipeline
