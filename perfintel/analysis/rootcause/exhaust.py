"""Exhaustion: a resource that filled slowly explains the symptoms that began when it was full.

The pair tests of :mod:`~perfintel.analysis.rootcause` let a change explain
another that began at most ``max_propagation`` later, one hop's delay. A leak
does not work that way: memory, file descriptors, a connection pool or a
database's sessions grow for many minutes and nothing happens until they reach
a limit; then requests fail or wait at once, often far longer after the growth
began than any hop. Seen from the symptoms, the leak began "too early" to
explain them, and the errors — larger, sharper, and spread over every caller
— rank above the resource that caused them.

With ``exhaustion`` (a fraction) on, change ``i`` explains a later symptom
(latency, errors) ``j`` at any delay when

* ``i`` is not itself a symptom (load, a resource, or a series of unknown role),
* ``i`` *grew gradually*: it took longer than one propagation hop to go from
  its onset to 80 % of its peak (a step, even a delayed one, does not; a change
  dated before the window did),
* ``i`` *held*: it stayed departed (beyond ``onset_sigma / 2``) from its onset
  to ``j``'s onset, and had reached at least ``exhaustion`` × its peak when
  ``j`` began (what was full when the symptoms appeared, not what was still
  low or had come back),
* ``j`` began after ``i`` beyond their onsets' uncertainty.

Only inside one workload (or from a machine to what runs on it): across
entities a slow drift of one service lines up with another's failure by chance
far more often than a dependency shows (tried with a quorum of callers, with the
symptoms required to begin within a hop of the filling, and with a learned
dependency: each lost more incidents than it won; BENCHMARKS.md, round 12b).
Pure: arrays in, pairs out.
"""

from __future__ import annotations

import numpy as np

from .words import SYMPTOM_ROLES


def gradual_rise(
    z: np.ndarray, peak: np.ndarray, onset: np.ndarray, max_prop: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each change's z-score path turned toward its peak, the peak's size, the steps from its
    onset on, and whether it took longer than one hop (``max_prop``) from its onset to 80 % of
    its peak: a fill, not a step."""
    v = np.sign(peak)[:, None] * z
    top = np.abs(peak)
    since = np.arange(z.shape[1])[None, :] >= np.maximum(onset, 0)[:, None]
    full = (v >= 0.8 * top[:, None]) & since
    reached = np.where(full.any(axis=1), np.argmax(full, axis=1), z.shape[1])
    return v, top, since, (reached - onset) > max_prop


def held_until(v: np.ndarray, since: np.ndarray, onset_sigma: float) -> np.ndarray:
    """The first step after each change's onset where its path ``v`` (turned toward its peak)
    fell back within ``onset_sigma / 2`` (the path's length when it never did)."""
    low = (v < onset_sigma / 2) & since
    return np.where(low.any(axis=1), np.argmax(low, axis=1), v.shape[1])


def exhaustion_links(
    z: np.ndarray,
    peak: np.ndarray,
    onset: np.ndarray,
    tol: np.ndarray,
    role: np.ndarray,
    hosts: np.ndarray,
    allowed: np.ndarray,
    max_prop: int,
    onset_sigma: float,
    fraction: float,
) -> np.ndarray:
    """``link[a, b]``: change ``a`` explains symptom ``b`` by exhaustion (see the module
    docstring). Rows of ``z`` (window z-scores), ``peak`` (signed peak z), ``onset`` (window
    index), ``tol`` (onset uncertainty, steps) and ``role`` (``ROLE_ORDER``, -1 unknown) are
    the changes; ``hosts`` (one workload, or ``a`` is the machine ``b`` runs on) and
    ``allowed`` (the declared graph lets ``a`` reach ``b``) are over their pairs."""
    k = onset.size
    link = np.zeros((k, k), dtype=bool)
    if k < 2 or fraction <= 0:
        return link
    v, top, since, gradual = gradual_rise(z, peak, onset, max_prop)
    drop = held_until(v, since, onset_sigma)  # held: until it fell back
    cause = gradual & ~np.isin(role, SYMPTOM_ROLES)
    symptom = np.isin(role, SYMPTOM_ROLES) & (onset >= 0)
    a_idx, b_idx = np.flatnonzero(cause), np.flatnonzero(symptom)
    if a_idx.size == 0 or b_idx.size == 0:
        return link
    sub = np.ix_(a_idx, b_idx)
    full = full_when_began(v, top, onset, tol, drop, a_idx, b_idx, fraction)
    link[sub] = full & hosts[sub] & allowed[sub]
    return link


def full_when_began(
    v: np.ndarray,
    top: np.ndarray,
    onset: np.ndarray,
    tol: np.ndarray,
    drop: np.ndarray,
    a_idx: np.ndarray,
    b_idx: np.ndarray,
    fraction: float,
) -> np.ndarray:
    """Over the pairs of causes ``a_idx`` and symptoms ``b_idx``: the symptom began after the
    cause (beyond both onsets' uncertainty), before the cause fell back (``drop``, from
    :func:`held_until`) and when the cause stood at least ``fraction`` of its peak."""
    ob = onset[b_idx]
    later = (ob[None, :] - tol[b_idx][None, :]) > (onset[a_idx] + tol[a_idx])[:, None]
    held = ob[None, :] < drop[a_idx][:, None]
    level = v[a_idx][:, ob] >= fraction * top[a_idx][:, None]
    return np.asarray(later & held & level)
