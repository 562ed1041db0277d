"""Changes that explain one another: a cycle of explained-by links ranked as one phenomenon.

The pair tests of :mod:`~perfintel.analysis.rootcause` let two changes explain
each other when they began together (closer than their onsets' uncertainty)
and nothing orders them, and chains of such ties join whole clusters: a
saturated database's CPU, its callers' latency and their errors, all dated
within a step or two. The ranking puts a change right after the lowest-ranked
change that explains it; a cycle must be cut somewhere, and a depth-first walk
cuts it where it closes — which depends on the order the series came in, not on
the incident.

With ``cycles`` on, the cycles are the strongly connected components of the
explained-by links (Tarjan's algorithm, iterative) and each is ranked as one
phenomenon: every member ranks after the lowest-ranked change *outside* it that
explains one of its members (what moved the cluster began before it or is
upstream of it), and inside it a cause precedes its effects — the members are
ordered by ``key`` (the caller's: the onset, then the role order load →
resources → latency → errors), the score deciding only among equal keys.
Mode 1 lets only the members with the smallest key lead (the rest rank after
the lowest of them); mode 2 orders the whole component by key. Either way the
ranking no longer depends on the order of the series.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

#: how far below the change it must follow a capped score is placed
_EPS = 1e-6


def after_explainers(
    raw: Mapping[int, float], explained: Mapping[int, list[int]]
) -> dict[int, float]:
    """Scores with every change ranked right after the lowest-ranked change that explains it.

    Resolved over the whole chain (an explainer's own rank is settled first,
    depth first), so three changes of one step order themselves whatever
    their sizes; a cycle, which ties broken differently per pair could make,
    is cut where it closes — where the walk, in the order of ``raw``, meets it
    (``cycles`` 0; see :func:`after_explainers_by_cycle`).
    """
    out: dict[int, float] = {}
    visiting: set[int] = set()
    for start in raw:
        if start in out:
            continue
        stack = [(start, iter(explained[start]))]
        visiting.add(start)
        while stack:
            i, todo = stack[-1]
            k = next((k for k in todo if k not in out and k not in visiting), None)
            if k is not None:
                visiting.add(k)
                stack.append((k, iter(explained[k])))
                continue
            stack.pop()
            visiting.discard(i)
            done = [out[k] for k in explained[i] if k in out]
            out[i] = min([raw[i], *(v - _EPS for v in done)])
    return out


def components(nodes: Sequence[int], edges: Mapping[int, list[int]]) -> list[list[int]]:
    """Strongly connected components of ``edges`` (``i`` → ``edges[i]``), each one emitted
    after every component it reaches (reverse topological order), iteratively."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    stack: list[int] = []
    on_stack: set[int] = set()
    out: list[list[int]] = []
    for root in nodes:
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(edges[root]))]
        while work:
            v, todo = work[-1]
            w = next(todo, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(edges[w])))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                u = work[-1][0]
                low[u] = min(low[u], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                out.append(comp)
    return out


def after_explainers_by_cycle(
    raw: Mapping[int, float],
    explained: Mapping[int, list[int]],
    key: Callable[[int], tuple[int, int]],
    mode: int,
) -> dict[int, float]:
    """Scores with every change ranked after the lowest-ranked change outside its cycle that
    explains it, and the members of one cycle ordered by ``key`` (see the module docstring;
    ``mode`` 1 or 2). A change in no cycle is a component of one: it ranks right after the
    lowest-ranked of its explainers, as without cycles."""
    out: dict[int, float] = {}
    for comp in components(list(raw), explained):
        inside = set(comp)
        above = [out[k] for i in comp for k in explained[i] if k not in inside]
        cap = min(above) - _EPS if above else float("inf")
        keys = {i: key(i) for i in comp}
        first = min(keys.values())
        lead = [i for i in comp if keys[i] == first]
        for i in lead:
            out[i] = min(raw[i], cap)
        prev = min(out[i] for i in lead)
        rest = [i for i in comp if keys[i] != first]
        if mode == 1:
            for i in rest:
                out[i] = min(raw[i], prev - _EPS)
            continue
        for i in sorted(rest, key=lambda i: (keys[i], -raw[i])):
            out[i] = min(raw[i], prev - _EPS)
            prev = out[i]
    return out
