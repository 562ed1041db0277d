"""The window opened back to the symptoms' story (``RootCauseParams.story``, 0 off).

Asked at the end of an incident's data, the window (the ``window`` before the asked time) may
open after the root began: the symptoms it caused are inside, already departed at the window
start or beginning within a hop of it, and the root, begun before them, is seen only under way
(or, when it came and went or held, not as a change at all). With ``story`` on, when the
largest symptom (the latency or errors change, as
:func:`~perfintel.analysis.rootcause.roles.role_of` reads the series, of the largest peak |z|)
began no later than ``near`` steps (one hop) after the window start, the window start moves
back by ``story`` window lengths (keeping at least four steps of data before it for a
baseline), so that what began before the symptoms is seen with its onset. Asked at the alert,
the largest symptom is the one that fired it, near the asked time, and nothing moves (a
smaller symptom near the window start is a background's).
"""

from __future__ import annotations

import numpy as np

from .changes import Changes
from .words import SYMPTOM_ROLES


def story_start(
    story: float, ws: int, length: int, near: int, ch: Changes, roles: np.ndarray
) -> int:
    """The window start (grid index) opened back ``story`` × ``length`` steps from ``ws`` when
    the largest symptom that changed (``ch``, onsets counted from ``ws``) began within ``near``
    steps of ``ws`` or before it (``roles``: each series' ``ROLE_ORDER``, -1 unknown, as
    :func:`~perfintel.analysis.rootcause.roles.role_codes` reads them); ``ws`` otherwise
    (``story`` 0, no symptom changed, the largest began later, no data before ``ws``)."""
    if story <= 0:
        return ws
    symptom = ch.changed & np.isin(roles, SYMPTOM_ROLES)
    if not symptom.any():
        return ws
    largest = int(np.argmax(np.where(symptom, np.abs(ch.peak), -1.0)))
    if ch.onset[largest] > near:
        return ws
    return max(min(ws, 4), ws - int(np.ceil(story * length)))
