"""Rule groups spread over rule shards, each shard evaluated by one process at a time.

When several processes run rules over one shared store and alerting database
(role ``api``, or ``all`` with ``alerting.database_url``), every process loads
every group but evaluates only the groups of the shards it holds:

* a group's shard is BLAKE2b of its key (``<file>;<name>``) modulo
  ``alerting.rule_shards``: the same in every process and across restarts;
* a shard is the lease ``rules:<shard>`` (``perfintel.alerting.state.leases``);
  every process also holds a membership lease ``rules:member:<holder>``, aims
  at ``ceil(shards / live members)`` shards, takes free or expired shard
  leases up to that and releases its surplus (once no evaluation of it is in
  flight), so a process that joins gets its share and a dead one's shards are
  taken over once its leases expire (``bus.lease_ttl``);
* an evaluation starts only while its shard's lease has more than
  ``MARGIN`` of its TTL left by this process's clock, and each write checks
  that again (a successor can take the lease only once it expired), so a
  process that stalled writes nothing after its lease ran out; alert states
  are saved fenced by the lease token in the same transaction
  (``SqlRuleState``).

``balance`` does database round trips: callers run it off the event loop.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
import zlib
from collections.abc import Callable

from perfintel.alerting.state.leases import Lease, LeaseManager

log = logging.getLogger(__name__)

SHARD_PREFIX = "rules:"
MEMBER_PREFIX = "rules:member:"


def rule_shard(group_key: str, shards: int) -> int:
    """The shard of a group (``GroupSpec.key``); ``hash()`` is salted per process."""
    digest = hashlib.blake2b(group_key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % shards


class RuleShards:
    """The rule shards this process holds (see the module docstring). Thread-safe."""

    #: an evaluation or a write needs at least this share of the lease's TTL left; the
    #: leases are renewed every third of the TTL, so a process that keeps up never drops below
    MARGIN = 0.25

    def __init__(
        self, leases: LeaseManager, shards: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.leases = leases
        self.shards = shards
        self.clock = clock
        self.owned: dict[int, Lease] = {}
        #: surplus shards handed back once their evaluations in flight end
        self.releasing: set[int] = set()
        self._member: Lease | None = None
        self._lock = threading.Lock()
        self._of: dict[str, int] = {}

    def shard_of(self, group_key: str) -> int:
        shard = self._of.get(group_key)
        if shard is None:
            if len(self._of) > 100_000:  # group keys come and go with reloads
                self._of.clear()
            shard = self._of[group_key] = rule_shard(group_key, self.shards)
        return shard

    def _fresh(self, lease: Lease) -> bool:
        return lease.expires_at - self.clock() > self.MARGIN * self.leases.ttl

    def lease_of(self, group_key: str) -> Lease | None:
        """The lease covering ``group_key`` while this process holds it (fencing token)."""
        return self.owned.get(self.shard_of(group_key))

    def gate(self, group_key: str) -> Callable[[], bool] | None:
        """At the start of an evaluation: ``None`` when this process must not evaluate the
        group now; else a check each write makes (the same lease, still fresh)."""
        shard = self.shard_of(group_key)
        with self._lock:
            lease = self.owned.get(shard)
            if lease is None or shard in self.releasing or not self._fresh(lease):
                return None
            token = lease.token

        def still_ours() -> bool:
            cur = self.owned.get(shard)
            return cur is not None and cur.token == token and self._fresh(cur)

        return still_ours

    def balance(self, busy: Callable[[int], bool] = lambda shard: False) -> None:
        """Renew what is held, hand back the surplus (not while ``busy(shard)``), take free
        shards up to this process's share."""
        self._member = (
            self.leases.renew(self._member) if self._member else None
        ) or self.leases.acquire(MEMBER_PREFIX + self.leases.holder)
        if self._member is None:
            return
        live = max(1, self.leases.count_live(MEMBER_PREFIX))
        target = math.ceil(self.shards / live)
        for shard, lease in list(self.owned.items()):
            renewed = self.leases.renew(lease)
            with self._lock:
                if renewed is None:
                    log.warning("rule shard %d: lease lost (taken over); not evaluating it", shard)
                    self.owned.pop(shard, None)
                    self.releasing.discard(shard)
                else:
                    self.owned[shard] = renewed
        with self._lock:
            keep = sorted(self.owned)[:target]
            self.releasing = set(self.owned) - set(keep)
        for shard in sorted(self.releasing):
            if not busy(shard):
                self._release(shard)
        start = zlib.crc32(self.leases.holder.encode()) % self.shards
        for k in range(self.shards):
            if len(self.owned) >= target:
                break
            shard = (start + k) % self.shards
            if shard in self.owned:
                continue
            got = self.leases.acquire(f"{SHARD_PREFIX}{shard}")
            if got is not None:
                log.info("rule shard %d: lease taken (token %d)", shard, got.token)
                with self._lock:
                    self.owned[shard] = got

    def _release(self, shard: int) -> None:
        with self._lock:
            lease = self.owned.pop(shard, None)
            self.releasing.discard(shard)
        if lease is not None:
            self.leases.release(lease)

    def release_all(self) -> None:
        """Hand every shard and the membership back (shutdown), so successors need not wait."""
        for shard in list(self.owned):
            self._release(shard)
        if self._member is not None:
            self.leases.release(self._member)
            self._member = None
