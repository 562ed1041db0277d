"""The rule engine as the service runs it: loading, reloading, scheduling, restoring.

``RuleService`` owns the loaded groups (``GroupRuntime``), keyed by
``<file>;<name>``. Rules come from ``alerting.rule_files`` (paths or globs)
and from groups stored through the rules API (``namespace`` plays the part of
the file). Every group runs on its own asyncio task that wakes at aligned
ticks (``stable_offset`` of the group key: groups are staggered over their
interval, and keep their phase across restarts) and evaluates the group in a
worker thread of the service's own pool (``alerting.rule_workers`` threads),
never on the event loop; a group is never evaluated twice at once.

Reloading (SIGHUP, ``POST /api/v1/admin/rules/reload``, ``POST /-/reload``,
any change through the rules API) parses everything first: if any file has
an error, the reload is refused with the file, line and reason and the
running groups stay as they are. Otherwise unchanged groups keep running
untouched, changed groups take over the alerts of their rules by name, new
groups start, and removed groups stop (their saved states are dropped).

At start-up a file with an error is refused on its own (logged with file,
line and reason; ``perfintel_rule_config_last_reload_successful`` is 0) and
the other files load, so one typo does not leave a server without rules.
Alert states are restored from the alerting database before the first
evaluation: a firing alert is firing again at once, with its original
``activeAt``; nothing goes back to pending and nothing is sent as new.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from perfintel.alerting.model import AlertSink
from perfintel.alerting.rules.files import (
    RuleFileError,
    load_rule_file,
    parse_group,
    resolve_rule_files,
)
from perfintel.alerting.rules.group import EvalOptions, GroupRuntime, GroupStatus
from perfintel.alerting.rules.lifecycle import FlapSettings
from perfintel.alerting.rules.metrics import RuleMetrics
from perfintel.alerting.rules.shards import RuleShards
from perfintel.alerting.rules.spec import GroupSpec
from perfintel.alerting.state.leases import LeaseManager
from perfintel.alerting.state.rule_store import SqlRuleState
from perfintel.background import pause
from perfintel.collect.schedule import next_tick, stable_offset
from perfintel.config_sections import AlertingSettings
from perfintel.errors import BadInputError, NotFoundError, PerfintelError
from perfintel.query.settings import QuerySettings
from perfintel.storage.base import Store
from perfintel.telemetry import Gauge, Registry

log = logging.getLogger(__name__)

#: perfintel's starter rules for its own host metrics (``alerting.builtin_rules``)
BUILTIN_RULES = Path(__file__).parent / "builtin" / "host.yml"


@dataclass(frozen=True)
class ReloadResult:
    ok: bool
    groups: int
    rules: int
    errors: tuple[str, ...] = ()


def eval_options(settings: AlertingSettings, query: QuerySettings | None = None) -> EvalOptions:
    return EvalOptions(
        default_interval_s=settings.evaluation_interval,
        resend_delay_s=settings.resend_delay,
        external_url=settings.external_url,
        external_labels=dict(settings.external_labels),
        flap=FlapSettings(settings.flap_window, settings.flap_threshold),
        query=query or QuerySettings(),
    )


class RuleService:
    """Loaded rule groups, their schedules and their state (see the module docstring)."""

    def __init__(
        self,
        settings: AlertingSettings,
        store: Store,
        *,
        sink: AlertSink | None = None,
        state: SqlRuleState | None = None,
        metrics: RuleMetrics | None = None,
        query: QuerySettings | None = None,
        clock: Callable[[], float] = time.time,
        shards: RuleShards | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.sink = sink
        self.state = state
        self.metrics = metrics or RuleMetrics()
        self.options = eval_options(settings, query)
        self.clock = clock
        #: with several processes on one database: the rule shards this one evaluates
        self.shards = shards
        #: group key -> the shard lease token its alert states were last loaded under
        self._restored: dict[str, int] = {}
        self._balancer: asyncio.Task[None] | None = None
        #: the API groups as last read from the database (another process may change them)
        self._api_loaded: list[tuple[str, str, str]] = []
        self.groups: dict[str, GroupRuntime] = {}
        self.last_reload: ReloadResult | None = None
        self.last_reload_at: float | None = None
        self._lock = threading.Lock()  # held while the set of groups changes
        self._pool = ThreadPoolExecutor(
            max_workers=settings.rule_workers, thread_name_prefix="perfintel-rules"
        )
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._running: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        #: the alerting database's engine when the service opened it (disposed at stop)
        self.db_engine: Engine | None = None

    # -- loading --

    def _read(self, strict: bool) -> tuple[list[GroupSpec], list[str]]:
        """Every group from files and the API; ``strict``: the first error raises."""
        errors: list[str] = []
        specs: list[GroupSpec] = []
        patterns = [*self.settings.rule_files]
        if self.settings.builtin_rules:
            patterns.append(str(BUILTIN_RULES))
        try:
            paths = resolve_rule_files(patterns)
        except RuleFileError as exc:
            if strict:
                raise
            errors.append(str(exc))
            paths = []
            for pattern in patterns:  # keep what does resolve
                with contextlib.suppress(RuleFileError):
                    paths.extend(resolve_rule_files([pattern]))
        for p in paths:
            try:
                specs.extend(load_rule_file(p))
            except RuleFileError as exc:
                if strict:
                    raise
                errors.append(str(exc))
        if self.state is not None:
            stored = self.state.api_groups()
            self._api_loaded = stored
            for namespace, name, source in stored:
                try:
                    specs.append(dataclasses.replace(parse_group(source, namespace), api=True))
                except RuleFileError as exc:
                    # stored after validation: only a newer perfintel's change could break it
                    errors.append(f"API group {namespace}/{name}: {exc}")
        seen: set[str] = set()
        unique = []
        for g in specs:
            if g.key in seen:
                msg = f'{g.file}: group "{g.name}" is defined twice'
                if strict:
                    raise RuleFileError(g.file, g.line, f'groupname: "{g.name}" is repeated')
                errors.append(msg)
                continue
            seen.add(g.key)
            unique.append(g)
        return unique, errors

    def load(self) -> ReloadResult:
        """The first load: bad files are refused one by one, the rest runs; states restored."""
        specs, errors = self._read(strict=False)
        for e in errors:
            log.error("rule file refused: %s", e)
        self._apply(specs)
        restored = sum(g.restore() for g in self.groups.values())
        if restored:
            log.info("restored %d alert states", restored)
        return self._done(not errors, errors)

    def reload(self) -> ReloadResult:
        """Re-read everything; on any error nothing changes (the result says why)."""
        try:
            specs, _ = self._read(strict=True)
        except RuleFileError as exc:
            log.error("rule reload refused, the running rules stay: %s", exc)
            return self._done(False, [str(exc)])
        self._apply(specs)
        return self._done(True, [])

    def _done(self, ok: bool, errors: Sequence[str]) -> ReloadResult:
        n_rules = sum(len(g.rules) for g in self.groups.values())
        result = ReloadResult(ok, len(self.groups), n_rules, tuple(errors))
        self.last_reload = result
        self.metrics.reload_success.set(1.0 if ok else 0.0)
        if ok:
            self.last_reload_at = self.clock()
            self.metrics.reload_time.set(self.last_reload_at)
        return result

    def _apply(self, specs: Sequence[GroupSpec]) -> None:
        with self._lock:
            old = self.groups
            new: dict[str, GroupRuntime] = {}
            for spec in specs:
                prev = old.get(spec.key)
                if prev is not None and prev.spec.fingerprint() == spec.fingerprint():
                    prev.options = self.options
                    new[spec.key] = prev
                    continue
                g = GroupRuntime(spec, self.options, state=self.state, metrics=self.metrics)
                if prev is not None:
                    g.adopt(prev)
                new[spec.key] = g
            for key in old.keys() - new.keys():
                self.metrics.forget_group(key)
                if self.state is not None:
                    self.state.drop_group(key)
            self.groups = new
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._schedule_all)

    # -- API-defined groups --

    def put_api_group(self, namespace: str, source: str) -> GroupSpec:
        """Validate and store a group given as YAML (replacing one of the same name)."""
        if self.state is None:
            raise BadInputError("rule groups through the API need the alerting database")
        _check_namespace(namespace)
        spec = parse_group(source, namespace)
        if any(g.spec.file == namespace and not g.spec.api for g in self.groups.values()):
            raise BadInputError(f"namespace {namespace!r} is the name of a rule file")
        self.state.put_api_group(namespace, spec.name, spec.source)
        result = self.reload()
        if not result.ok:
            # a rule file broke meanwhile: the group is stored, it runs once the file is fixed
            log.warning(
                "stored API group %s/%s; reload refused: %s", namespace, spec.name, result.errors
            )
        return spec

    def delete_api_group(self, namespace: str, name: str | None = None) -> None:
        if self.state is None:
            raise BadInputError("rule groups through the API need the alerting database")
        if not self.state.delete_api_group(namespace, name):
            what = f"{namespace}/{name}" if name is not None else namespace
            raise NotFoundError(f"no rule group {what}")
        self.reload()

    def api_groups(self, namespace: str | None = None) -> list[tuple[str, str, str]]:
        return [] if self.state is None else self.state.api_groups(namespace)

    # -- evaluation --

    def evaluate_group(self, key: str, now: float | None = None) -> None:
        """Evaluate one group now, in the calling thread (the scheduler's worker)."""
        g = self.groups.get(key)
        if g is None:
            return
        g.evaluate(self.clock() if now is None else now, self.store, self.sink)

    def snapshot(self) -> list[GroupStatus]:
        """Every group's last status, by file then name."""
        groups = list(self.groups.values())
        return sorted((g.status for g in groups), key=lambda s: (s.spec.file, s.spec.name))

    # -- scheduling --

    async def start(self) -> None:
        """Schedule every group on the running loop (call ``load`` first)."""
        self._loop = asyncio.get_running_loop()
        self._schedule_all()
        if self.shards is not None:
            self._balancer = self._loop.create_task(self._balance_loop(), name="rules:shards")

    def _schedule_all(self) -> None:
        for key in list(self._tasks):
            g = self.groups.get(key)
            task = self._tasks[key]
            if g is None or getattr(task, "perfintel_group", None) is not g:
                task.cancel()
                del self._tasks[key]
        for key, g in self.groups.items():
            if key not in self._tasks:
                task = asyncio.get_running_loop().create_task(self._run(g), name=f"rules:{key}")
                task.perfintel_group = g  # type: ignore[attr-defined]
                self._tasks[key] = task

    async def _run(self, g: GroupRuntime) -> None:
        loop = asyncio.get_running_loop()
        interval = g.interval_s
        offset = stable_offset(g.spec.key, interval)
        due = next_tick(self.clock(), interval, offset)
        while True:
            delay = due - self.clock()
            if delay > 0:
                await asyncio.sleep(delay)
            key = g.spec.key
            if key in self._running:  # still evaluating (maybe the group it replaced): skip
                self.metrics.missed.labels(key).inc()
            else:
                self._running.add(key)
                fut = loop.run_in_executor(self._pool, self._evaluate, g, due)
                # the key is released when the evaluation ends, not when this task is
                # cancelled by a reload: a replacing group never runs alongside it
                fut.add_done_callback(functools.partial(self._finished, key))
                with contextlib.suppress(Exception):
                    await asyncio.shield(fut)
            due += interval
            now = self.clock()
            if due < now:  # overran: skip to the next tick ahead, counting the misses
                missed = int((now - due) // interval) + 1
                self.metrics.missed.labels(g.spec.key).inc(missed)
                due += missed * interval

    def _evaluate(self, g: GroupRuntime, due: float) -> None:
        """One scheduled evaluation (in the pool): with rule shards only when this process
        holds the group's shard, after reloading its alert states if it (re)gained it."""
        if self.shards is None:
            g.evaluate(due, self.store, self.sink)
            return
        key = g.spec.key
        gate = self.shards.gate(key)
        lease = self.shards.lease_of(key)
        if gate is None or lease is None:
            # another process evaluates it: show its latest alert states (the rules and
            # alerts APIs of every process agree), reloaded again when this one gains it
            self._restored.pop(key, None)
            g.restore(reset=True)
            return
        if self._restored.get(key) != lease.token:
            # the previous holder's latest states (pending since, fired at) are in the database
            n = g.restore(reset=True)
            self._restored[key] = lease.token
            log.info("rule group %s: taken over with %d alert states", key, n)
        g.evaluate(due, self.store, self.sink, may_write=gate)

    def _busy(self, shard: int) -> bool:
        """Whether a group of ``shard`` is being evaluated now (its lease is kept until not)."""
        shards = self.shards
        return shards is not None and any(shards.shard_of(k) == shard for k in list(self._running))

    async def _balance_loop(self) -> None:
        shards = self.shards
        assert shards is not None
        loop = asyncio.get_running_loop()
        while True:
            await pause(shards.leases.ttl / 3)
            try:
                await loop.run_in_executor(None, shards.balance, self._busy)
                await loop.run_in_executor(None, self._follow_api_groups)
            except PerfintelError as exc:  # the database away: the leases run out, others take over
                log.warning("rule shards: %s; retrying", exc)

    def _follow_api_groups(self) -> None:
        """Reload when another process changed the groups stored through the rules API: the
        group may belong to a shard this process holds."""
        if self.state is None:
            return
        current = self.state.api_groups()
        if current != self._api_loaded:
            # not again until they change (a refused reload is logged; the next one applies)
            self._api_loaded = current
            log.info("rule groups changed through another process's rules API: reloading")
            self.reload()

    def _finished(self, key: str, fut: asyncio.Future[object]) -> None:
        self._running.discard(key)
        if not fut.cancelled() and fut.exception() is not None:
            log.error("rule group %s failed", key, exc_info=fut.exception())

    async def reload_async(self) -> ReloadResult:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.reload)

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        if self._balancer is not None:
            tasks.append(self._balancer)
            self._balancer = None
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown, True)
        if self.shards is not None:  # no evaluation runs now: successors may take over at once
            try:
                await asyncio.get_running_loop().run_in_executor(None, self.shards.release_all)
            except PerfintelError as exc:  # they expire instead
                log.warning("rule shards not released: %s", exc)
        if self.db_engine is not None:
            self.db_engine.dispose()


def _check_namespace(namespace: str) -> None:
    if not namespace or len(namespace) > 255 or "/" in namespace or namespace.startswith("."):
        raise BadInputError(
            f"invalid namespace {namespace!r}: 1-255 characters, no '/', not starting with '.'"
        )


async def start_service(
    settings: AlertingSettings,
    data_dir: Path,
    store: Store,
    *,
    registry: Registry | None,
    query: QuerySettings | None,
    sink: AlertSink | None,
    engine: Engine | None = None,
    leases: LeaseManager | None = None,
) -> RuleService:
    """Load and restore the rules and schedule them (the app's start-up). ``engine``: the
    alerting database when the caller opened it (shared with the notification pipeline);
    otherwise it is opened here and closed by ``stop``. ``leases`` (on that database):
    several processes run rules, each evaluates the groups of the rule shards it holds."""
    from perfintel.alerting.state.database import default_url, open_database

    loop = asyncio.get_running_loop()
    own = engine is None
    if engine is None:
        url = settings.database_url or default_url(data_dir)
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        engine = await loop.run_in_executor(None, open_database, url)
    shards = RuleShards(leases, settings.rule_shards) if leases is not None else None
    service = RuleService(
        settings,
        store,
        sink=sink,
        state=SqlRuleState(engine, lease_of=shards.lease_of if shards is not None else None),
        metrics=RuleMetrics(registry),
        query=query,
        shards=shards,
    )
    service.db_engine = engine if own else None
    await loop.run_in_executor(None, service.load)
    if shards is not None:
        if registry is not None:
            Gauge(
                "perfintel_rule_shards_owned",
                "Rule shards this process holds the lease of (it evaluates their groups).",
                registry=registry,
            ).set_function(lambda: float(len(shards.owned)))
        await loop.run_in_executor(None, shards.balance, service._busy)
    await service.start()
    return service
