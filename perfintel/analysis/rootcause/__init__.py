"""Root cause of an incident: which series changed first, most, and explains the others.

Arrays in, ranked :class:`Cause` objects out. :mod:`.ranking` holds the
principles and the ranking itself (read its docstring first); every other
module is one mechanism it calls:

- :mod:`.parameters` — :class:`RootCauseParams`, every constant with why it has its value;
- :mod:`.measure`, :mod:`.changes`, :mod:`.baseline`, :mod:`.onset`, :mod:`.rise` — how
  abnormal a series became, against which baseline, and when its change began;
- :mod:`.window`, :mod:`.story`, :mod:`.durations` — where the ranking looks (the window,
  opened back to the symptoms' story) and how late a change may begin and still be a cause;
- :mod:`.roles` — what a metric's name says it measures (role, occupancy);
- :mod:`.words` — whose a series is by its labels (entity, host), and the explanations;
- :mod:`.pairs`, :mod:`.links`, :mod:`.cycles` — which change explains which;
- :mod:`.exhaust`, :mod:`.filling`, :mod:`.shared`, :mod:`.scope`, :mod:`.work`,
  :mod:`.machine` — resources that fill, are shared, relieved, do the work, or
  belong to the machine.
"""

from __future__ import annotations

from .parameters import RootCauseParams
from .ranking import ROLE_ORDER, Cause, DependencyGraph, Follower, rank_root_causes
from .roles import is_occupancy, role_of
from .words import entity_of, host_of

__all__ = [
    "ROLE_ORDER",
    "Cause",
    "DependencyGraph",
    "Follower",
    "RootCauseParams",
    "entity_of",
    "host_of",
    "is_occupancy",
    "rank_root_causes",
    "role_of",
]
