"""The constants of the root-cause ranking (:mod:`~perfintel.analysis.rootcause`).

Each option says what it does and how its value was chosen; the module
docstring of :mod:`~perfintel.analysis.rootcause` gives the principles.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RootCauseParams:
    """The method's constants (see the module docstring)."""

    min_sigma: float = 5.0
    tail_factor: float = 1.0
    onset_sigma: float = 3.0
    onset_fraction: float = 0.2
    explain_corr: float = 0.7
    #: inside one workload, a change of a role earlier in the order (load → resources →
    #: latency → errors) explains a later role's change when their paths correlate at least
    #: this much (the smaller of this and ``explain_corr``): a threshold, a timeout or a cap
    #: between them bends the course without breaking the dependency
    inner_corr: float = 0.7
    max_gain: float = 2.0
    #: weight of the log of what a change explains (see :func:`_support`)
    support_weight: float = 0.8
    #: what an explained change that is not a symptom (latency, errors) counts for, relative
    #: to one that is
    context_weight: float = 0.3
    #: steps after the incident time a change may still begin and count as a cause
    onset_slack: int = 1
    #: across entities and without a declared graph, ``i`` explains ``j`` only when their
    #: step-to-step changes in the baseline were correlated at some lag of ``i`` ahead of ``j``
    #: at least this much (a learned dependency; 0 disables the test)
    learned_corr: float = 0.1
    #: when above 0, the learned dependency is a significance test instead of the
    #: ``learned_corr`` threshold (see :func:`significant_links`): ``i`` explains ``j`` across
    #: entities only when their baseline co-movement with ``i`` ahead by 0 to
    #: ``max_propagation`` steps is significant at this false-discovery rate over the pairs
    link_fdr: float = 0.0
    #: a change supports only the explainers whose course it follows nearly as closely as it
    #: follows its best explainer's (path correlation at least the best's minus this; 1 or
    #: more: every explainer): an effect is a lagged, attenuated copy of its cause, and a
    #: coincident change it merely lines up with follows its course less closely
    credit_margin: float = 1.0
    #: a cycle found in the baseline (periods of an hour, a day, a week; at least three of
    #: them) is carried into the window when its even and odd cycles correlate at least this
    #: much (0 disables)
    seasonal_gain: float = 0.85
    #: onset uncertainty of a sharp change, in steps: two changes closer than the sum of
    #: their uncertainties began together, and the structure (graph, host, role) orders them
    sharp_tolerance: float = 0.5
    #: a resource growing steadily (a leak) explains what it moves in its own workload at any
    #: later time in the window: exhaustion comes when the growth reaches a limit, not after a
    #: propagation delay
    accumulation: bool = True
    #: subtracted per ``max_propagation`` by which the latest change of a cluster (the change
    #: and what it accounts for) began before the incident time, beyond one: the alert fires
    #: when the symptoms cross, so a cluster that stopped growing long before did not fire
    #: it (a ramp still grows at the incident time)
    recency_weight: float = 0.0
    #: 1: a resource of one service (CPU, memory, a pool) is moved from another service only by
    #: the load it sends (traffic) or, for an occupancy, by the latency it waits on (Little's
    #: law); another service's resources or errors do not reach it but through those
    resource_paths: float = 0.0
    #: a change already departing when the window opens (never back within ``onset_sigma / 2``
    #: before its peak) is re-measured against the baseline before a window opened up to this
    #: many window lengths earlier, and dated where it began there (0 disables; 1 chosen by
    #: cross-validation, ``benchmarks/root_cause.py --cv --only lead``): a leak that
    #: started before the window otherwise has its onset clamped to the window start, and its
    #: shape read from half way up its rise (see
    #: :func:`~perfintel.analysis.rootcause.measure.lead_dated`)
    lead: float = 1.0
    #: orphan symptoms, 0 off (:mod:`~perfintel.analysis.rootcause.links`, :class:`OrphanRule`
    #: for the mode and the other four; chosen by ``--cv --only orphan,orphan_corr,...``)
    orphan: float = 3.0
    orphan_corr: float = 0.9
    orphan_gain: float = 0.0
    orphan_roles: float = 0.0
    orphan_quorum: float = 2.0
    #: bygone changes, 0 off: when symptoms (latency, errors) changed by the incident time, a
    #: change that came back within ``max(onset_sigma, bygone × |peak|)`` of its baseline
    #: before the incident time and moved no symptom (is none and explains none, directly or
    #: through what it explains) ranks after every other: an incident is what is wrong when
    #: the alert fires and what moved its symptoms, and a change that came and went before it
    #: without touching them is another event, however large (see :func:`_moves_symptoms`)
    #: (0.35 chosen by cross-validation, ``--cv --only bygone``)
    bygone: float = 0.35
    #: a cycle of explained-by links, 0 off (cut where a depth-first walk closes it): one
    #: phenomenon, after what explains it from outside, ordered by onset then role (1: the
    #: first lead; 2: all in that order) (:mod:`~perfintel.analysis.rootcause.cycles`; 2 chosen
    #: by cross-validation, ``--cv --only cycles``)
    cycles: float = 2.0
    #: Little's law inside one workload, 0 off: 1 counts open file descriptors and sockets as
    #: occupancies (one per connection in flight: arrivals × latency, so they move with latency
    #: either way); 2 also puts a workload's other resources (CPU, memory) before an occupancy
    #: below its cap that began with them (they slow the work; the occupancy holds it longer)
    #: (2 chosen by cross-validation, ``--cv --only little_order``)
    little_order: float = 2.0
    #: a change toward relief, 0 off: less load, less of a resource in use, faster responses,
    #: fewer errors cannot have made anything worse; such a change explains nothing and loses
    #: this much score (:mod:`~perfintel.analysis.rootcause.scope`; 3 chosen by
    #: cross-validation, ``--cv --only relief``)
    relief: float = 3.0
    #: exhaustion, 0 off: a change that grew gradually (longer than a hop to 80 % of its peak)
    #: and held explains a later symptom (latency, errors) of its own workload at any delay when
    #: it had reached this fraction of its peak as the symptom began: a leak harms when it
    #: reaches a limit (:mod:`~perfintel.analysis.rootcause.exhaust`; 0.65 chosen by
    #: cross-validation, ``--cv --only exhaustion``)
    exhaustion: float = 0.65
    #: back-dating a gradual change, 0 off: a change that took at least three steps from its
    #: first step past the onset threshold to this fraction of its peak is dated where the line
    #: fitted to that rise meets its baseline (never later than the threshold's date, never
    #: earlier by more than the rise took): a ramp begins at the baseline, not where it leaves
    #: the noise (:mod:`~perfintel.analysis.rootcause.onset`; left off by cross-validation,
    #: ``--cv --only backdate``: out of fold +9/−10 at 0.5, BENCHMARKS.md round 13b)
    backdate: float = 0.0
    #: a resource still filling at the alert, 0 off: the unexplained, gradual, held change of a
    #: resource (or of unknown role) that began before every symptom and still stood at this
    #: fraction of its peak at the incident time ranks right after the first change, even
    #: when no link ties it to the symptoms: an alert on exhaustion comes late, in whatever
    #: calls the exhausted thing (:mod:`~perfintel.analysis.rootcause.filling`; 0.9 chosen by
    #: cross-validation with ``rise`` and ``work_first``, ``--cv --only work_first,rise,filling``:
    #: out of fold top-3 93.2 -> 94.4, top-1 81.6 -> 82.1, BENCHMARKS.md round 17; alone its
    #: gain, top-3 93.2 -> 93.9 and top-1 unchanged, was under the bar of one point)
    filling: float = 0.9
    #: a change that began inside the baseline, 0 off: a series past ``min_sigma`` but not past
    #: its baseline's largest |z|, departed over the whole window (never back within
    #: ``onset_sigma / 2``), whose baseline's largest |z| lies in the final run departing toward
    #: its peak, is measured again over a window opened this many window lengths (at least two
    #: steps) before that run began, against the baseline before it, and is a change dated
    #: where it began when it is one there and the window still holds its peak: a series'
    #: history of outliers is its history before the change, not the change itself
    #: (:mod:`~perfintel.analysis.rootcause.rise`). With it on, ``exhaustion`` also reads the
    #: paths before the window of the changes dated there (a pool full before its pod's
    #: latency rose, both before the window) (0.3 chosen by cross-validation with ``filling``
    #: and ``work_first``, BENCHMARKS.md round 17)
    rise: float = 0.3
    #: a shared stock that filled, 0 off: a change that grew gradually and held (no symptom)
    #: explains the orphan symptoms (latency, errors nothing of their own workload explains) of
    #: at least two other entities, the graph permitting, that began within one hop of one
    #: another after it had reached this fraction of its peak: callers of one exhausted
    #: dependency fail together, a chance drift does not explain a group
    #: (:mod:`~perfintel.analysis.rootcause.shared`; off: ``--cv --only shared`` chooses 0.9,
    #: out of fold 81.5 / 93.6 against 81.6 / 93.2 with variant top-1 down 2.0; with ``rise``
    #: and ``filling`` 82.0 / 93.8: under the bar, BENCHMARKS.md round 15)
    shared: float = 0.0
    #: work before waiting, 0 off: a workload's CPU that rose in the same step as latency or
    #: errors of at least this many other entities comes first (another service's latency or
    #: errors do not make a service do more work; a shared dependency's saturated CPU makes
    #: its callers wait) (:mod:`~perfintel.analysis.rootcause.work`; 1 chosen by
    #: cross-validation, ``--cv --only work_first,rise,filling``, BENCHMARKS.md round 17: alone
    #: out of fold 81.6 / 93.2 -> 81.9 / 93.6, under the bar; with ``rise`` and ``filling``
    #: 82.1 / 94.4)
    work_first: float = 1.0
    #: with ``shared``, a stock explains its callers only when its peak |z| is at least this
    #: many times ``min_sigma``, 0 off: an exhaustion is a large departure, a drift of a few
    #: sigmas that held is not one (:mod:`~perfintel.analysis.rootcause.shared`; off: 2 is the
    #: choice of ``--cv --only shared,shared_size,shared_cover,rise,filling``, see
    #: ``shared_cover``)
    shared_size: float = 0.0
    #: with ``shared``, a stock explains a group of orphan symptoms only when the group spans at
    #: least this share of the entities with an orphan symptom, 0 off: when a shared dependency
    #: is exhausted, what fails unexplained is its callers, together; a group that leaves most of
    #: the unexplained entities aside lines up by chance with part of another fault's spread
    #: (:mod:`~perfintel.analysis.rootcause.shared`; off: 0.8 is the choice of ``--cv --only
    #: shared,shared_size,shared_cover,rise,filling``, with ``shared`` 0.9, ``shared_size`` 2,
    #: ``rise`` 0.3 and ``filling`` 0.9: out of fold 82.4 / 94.0 against 81.6 / 93.2, top-1 and
    #: top-3 +0.8, under the bar of one point; from round 17's defaults, ``--cv --only
    #: shared,shared_size,shared_cover`` chooses 0.9, 3, 0.5: out of fold 82.5 / 94.4, top-1
    #: +7 / −5, top-3 +0 / −1; BENCHMARKS.md round 16)
    shared_cover: float = 0.0
    #: a machine's own series by name, 0 off: a node exporter's ``node_*`` series naming its
    #: host or node is the machine's own (entity ``node=<name>``; Kubernetes scrapes label it
    #: with the exporter pod's labels), and a machine's own series explains what runs on it
    #: (:mod:`~perfintel.analysis.rootcause.machine`; off: alone it fires on node series that
    #: sum their pods' usage, blind top-1 73.5 -> 62.0 on seeds 0-199; with ``machine_sums`` it
    #: ties the defaults, +0 / −0 out of fold, no tuning incident having a node at fault;
    #: BENCHMARKS.md round 18)
    machine_names: float = 0.0
    #: with ``machine_names``, a machine's sum follows its parts, 0 off: a ``node_*`` series of
    #: a resource (memory, CPU and load, network, disk) is accounted for by a workload's change
    #: of that resource on its machine when, in one unit (bytes), the workload's absolute
    #: change at the node's peak is at least this share of the node's (conservation), or, with
    #: no common unit, when the workload's change began no later; then it hosts nothing, and
    #: the workload's change comes first and hosts it: a node's available memory or load sums
    #: its pods', a pod's leak is not the node's trouble
    #: (:func:`~perfintel.analysis.rootcause.machine.sums_followed`; off: BENCHMARKS.md round
    #: 18, ``--cv --only machine_names,machine_sums``: with 0.5 or 0.8 the rankings of the
    #: tuning seeds are those of ``machine_names`` off, +0 / −0, so the search keeps both off)
    machine_sums: float = 0.0
    #: an effect lasts no longer than its cause, 0 off: a change that came back before the
    #: incident time (its last step departed by ``max(onset_sigma, outlive × |peak|)``)
    #: explains no change that stayed departed more than ``max_propagation`` steps after it
    #: came back, except through a stock (``accumulation``, ``exhaustion``, ``shared``): a
    #: transient of another entity takes no lasting symptom as its effect by a chance link
    #: (:mod:`~perfintel.analysis.rootcause.outlive`; off: ``--cv --only outlive`` chooses
    #: 0.5 in every fold, out of fold 82.2 / 94.5 -> 82.6 / 94.9, top-1 +4 / −1, top-3 +3 / −0,
    #: under the bar; a slower recovery of a true effect also cuts links, BENCHMARKS.md round 20)
    outlive: float = 0.0
    #: with ``orphan_quorum``, the quorum counted before the choice, 0 off: an explainer's
    #: orphans are counted over every orphan it qualifies for (path, onset, graph), and each
    #: orphan's explainer (``orphan`` mode) is chosen among those that reach the quorum: a
    #: shared dependency is what reaches several callers, and an orphan whose earliest
    #: explainer reaches no other is still explained by the shared one it follows
    #: (:class:`~perfintel.analysis.rootcause.links.OrphanRule`; off: on all 800 tuning seeds
    #: blind top-1 73.5 -> 75.0, +3 / −0, nothing else moves, but the three lie in one fold
    #: (seeds 41, 131, 196), so ``--cv --only orphan_first`` is +0 / −0 out of fold, 82.2 /
    #: 94.5: under the bar, BENCHMARKS.md round 19)
    orphan_first: float = 0.0
    #: ``onset_slack`` in time, 0 off: a change may begin up to this many minutes (at least
    #: one step) after the incident time and still count as a cause, instead of
    #: ``onset_slack`` steps (:mod:`~perfintel.analysis.rootcause.durations`; chosen by
    #: ``--cv --only slack_minutes,tolerance_minutes,spike_return_minutes``, BENCHMARKS.md
    #: "durations in time")
    slack_minutes: float = 0.0
    #: a ramp's onset uncertainty clipped to 1 to 3 times this many minutes instead of 1 to 3
    #: steps, 0 off (:mod:`~perfintel.analysis.rootcause.durations`; same cross-validation)
    tolerance_minutes: float = 0.0
    #: a spike is seen back below 3σ for this many minutes (at least one sample) instead of
    #: two samples, 0 off (:mod:`~perfintel.analysis.rootcause.durations`; same
    #: cross-validation)
    spike_return_minutes: float = 0.0
    #: with ``bygone``, changes that moved no symptom, 0 off: when symptoms changed, a change
    #: still departed at the incident time that is no symptom and explains none (directly or
    #: through what it explains) ranks after every other too, as a bygone one does: asked
    #: late, background drifts that kept growing outrank a root (off: ``--cv --only mute``,
    #: BENCHMARKS.md "durations in time")
    mute: float = 0.0
    #: a change that began after every symptom, 0 off: when symptoms (latency, errors) changed
    #: by the incident time, a change of another role that began after all of them (beyond
    #: both onset tolerances) caused none of them and ranks after every other, as a bygone one
    #: does (off: ``--cv --only after_symptoms``, BENCHMARKS.md "durations in time")
    after_symptoms: float = 0.0
    #: a series constant through the baseline, 0 off: its spread is at least the rounding of
    #: its values' grid (a count's 1, a price's 0.01: :func:`~.baseline.value_grid`), not
    #: 1e-12: a histogram bucket at 0 for hours that counts one fast request is 3.5σ, not
    #: 1e12σ. On: no generated incident moves (no generator draws a constant baseline: 0 of
    #: 1,800 rankings differ, ``benchmarks/root_cause_identity.py``), and the demo's incident,
    #: asked over a day of end times, is found 38 times in 39 instead of 36 (the misses: such
    #: a bucket outranking the slow replica; BENCHMARKS.md "A count on a series that was 0")
    grid_floor: float = 1.0
    #: a cause begins no later than the first symptom, 0 off: the latest onset that counts as a
    #: cause is the later of the incident time plus the slack (``onset_slack``,
    #: ``slack_minutes``) and the onset of the first symptom (latency, errors) that began after
    #: the incident time, at most this many minutes after it; a symptom that began past the
    #: slack is an effect and stays late. Asked when the fault begins (its injection, before
    #: anything shows), its root is dated a step or more later (onset uncertainty) and a leak
    #: later still; asked at the alert, a later symptom opens the window only to changes of
    #: other roles begun before it (:func:`~perfintel.analysis.rootcause.durations.to_first_symptom`;
    #: 10 chosen by ``--cv --only symptom_minutes --ask at-alert,onset``: out of fold top-1
    #: pooled 71.2 -> 78.4, at the alert 82.4 -> 82.6, at the onset 60.0 -> 74.2; with
    #: ``slack_minutes`` the search takes 5 too, which costs variant 2.0 at the alert,
    #: BENCHMARKS.md "root cause asked before the symptoms")
    symptom_minutes: float = 10.0
    #: the window opened back to the symptoms' story, 0 off: when the largest symptom (the
    #: latency or errors change of the largest peak |z|) began no later than ``max_propagation``
    #: after the window start, the window start moves back this many window lengths (keeping
    #: four steps of baseline), so that a root begun before the symptoms is seen with its onset:
    #: asked at the end of the data, the window may open after the root began
    #: (:mod:`~perfintel.analysis.rootcause.story`; 0.5 chosen by ``--cv --only story --ask
    #: at-alert,end``: out of fold top-1 pooled 80.1 -> 81.8, at the end 77.5 -> 81.2, at the
    #: alert 82.6 -> 82.4; gated on any symptom instead of the largest the alert lost 1.6,
    #: BENCHMARKS.md "Root cause asked at the end of the data")
    story: float = 0.5
    #: onsets in missed scrapes, 0 off: a change whose onset (or the step before it) was not
    #: sampled is dated at the middle of that gap with half of it as uncertainty (1), or at the
    #: first step seen with it (2), not where interpolation across the gap first crossed the
    #: threshold, its start (:mod:`~perfintel.analysis.rootcause.unseen`; off: ``--cv --only
    #: gap_onsets,counter_gaps --perturb none,gaps``, pooled out of fold 83.9 -> 83.4, plain
    #: variant -1.0 with 1, BENCHMARKS.md "data faults of real scrapes")
    gap_onsets: float = 0.0
    #: a counter's missed samples, 0 off: the steps of a gap share the counter's increase
    #: over it evenly, instead of the increases around the gap interpolated over it (which
    #: drops what the counter counted while it was not scraped:
    #: :func:`~perfintel.analysis.rootcause.unseen.spread_increase`; off, by the same
    #: ``--cv`` as ``gap_onsets``: plain variant -1.5, gapped +0.5)
    counter_gaps: float = 0.0
    #: a baseline's spread over its own wander, 0 off: a series is a change only when its peak
    #: |z| is at least ``min_sigma`` times how much wider the error of its baseline's line,
    #: extrapolated this many window lengths past the baseline's end, is than the baseline's
    #: spread, for an AR(1) noise of the residuals' lag-1 autocorrelation (a short or slowly
    #: wandering baseline holds few independent points: an uncertain level and slope;
    #: :func:`~perfintel.analysis.rootcause.baseline.wander_factor`); the z-scores are not
    #: rescaled: a slowly wandering background series is no change, a change keeps its size
    #: (off: ``--cv --only wander --perturb none,recent`` chooses 2, the grid's largest, out of
    #: fold pooled 77.8 / 89.8 -> 78.7 / 90.9, but plain variant top-1 -1.5 and blind over an
    #: hour's baseline -2.5: roots that wander slowly are held to the same bar; BENCHMARKS.md
    #: "Root cause: a baseline's spread over its own wander")
    wander: float = 0.0
