"""What belongs to an incident: the changes that moved its symptoms, and the direction of harm.

An incident is something getting worse: more load than a service can take, a
resource running out, slower responses, more errors. Two readings follow.

* :func:`moves_symptoms`: the symptoms (latency, errors) and every change that
  explains one, directly or through a chain of explained changes — what the
  ranking's ``bygone`` test keeps, however long ago it came back.
* :func:`relieved`: a change toward relief — less offered load, less of a
  resource in use (more of one that counts what is free or available), faster
  responses, fewer errors — cannot have made anything worse: it is an effect
  (less work reaching a service, a restart freeing its memory) or another
  event. With ``relief`` on (:class:`~perfintel.analysis.rootcause.RootCauseParams`)
  such a change explains nothing and loses score. A series whose role the
  name does not tell has no direction and is never relieved.

Indices and labels in, sets and flags out; no ranking here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from perfintel.model import LabelSet, metric_name

from .words import ROLE_ORDER, role_of

#: name fragments of a gauge that counts what is left (free memory, idle CPU): for these a
#: fall, not a rise, is the pressure
LEFT_WORDS = ("avail", "free", "idle", "remaining", "headroom")


def moves_symptoms(symptoms: Sequence[int], explained: Mapping[int, list[int]]) -> set[int]:
    """The symptoms and every change that explains one, directly or through a chain of
    explained changes (walked back from the symptoms along ``explained``)."""
    seen = set(symptoms)
    todo = list(symptoms)
    while todo:
        for k in explained[todo.pop()]:
            if k not in seen:
                seen.add(k)
                todo.append(k)
    return seen


def relieved(labels: LabelSet, peak: float, role: int | None = None) -> bool:
    """Whether a change of signed peak ``peak`` (in sigmas) of the series ``labels`` is
    toward relief: load, a resource's use, latency or errors fell (a gauge of what is left —
    :data:`LEFT_WORDS` — rose). ``False`` when the role is unknown (``role``: its
    ``ROLE_ORDER``, -1 unknown, when already read)."""
    if (role_of(labels) not in ROLE_ORDER) if role is None else role < 0:
        return False
    name = metric_name(labels).lower()
    left = any(w in name for w in LEFT_WORDS)
    return (peak > 0) if left else (peak < 0)
