"""The task-grouping search (docs/method.md §5) as a pure planner: ``known results -> next groups
to verify | final partition``.  No Snakemake and no training here: a verification is whatever
``evaluate`` (in :func:`search`) or the workflow's checkpoint provides, a drop ``dP(C)`` in dB.

A group ``C`` (frozenset of degradation names) is feasible iff ``dP(C) <= delta``; singletons are
always feasible and are never verified.  Goal: partition the n names into the fewest feasible
groups, with as few verifications (trainings) as possible, never verifying a group twice.

Purity
------
:meth:`Planner.next` replays its whole (deterministic) procedure from scratch against ``known``
each call; the first time the procedure needs a result that ``known`` lacks, it returns the
groups it needs (at most ``probes_per_round``, never known, never singletons).  The same ``known``
therefore always gives the same answer, which is what a Snakemake checkpoint re-evaluated each
round needs.  Only the rankings (which depend on names and distances only) are cached.

Strategy ``"paper"`` and the choices the paper leaves open
---------------------------------------------------------
1. Ranking Λ_L: every L-subset scored by the mean of its pairwise (symmetric) distances,
   ascending; "close" means are those equal after rounding to 9 decimals, and then the lower
   (population) variance of the pairwise distances goes first; remaining ties are broken
   lexicographically by the sorted member names.  Subsets of one size are generated with
   ``itertools.combinations`` and scored with numpy, one size at a time (n = 20 is fine).
2. L_max: binary search over L in [2, n] for the largest L whose top-ranked group is feasible
   (L = 1 is the implicit always-feasible lower end; if even the best pair fails, L_max = 1 and
   the answer is all singletons).  Midpoint rounds up: ``mid = (lo + hi + 1) // 2``.
3. Cut of Λ_L for L = 2..L_max: binary search for the last feasible position, assuming
   monotonicity along the ranking (position -1 is the "nothing feasible" sentinel, so the top group
   itself is probed when needed).  Known results of that size are folded in first (an infeasible
   position p sets ``hi = p - 1``, then a feasible one sets ``lo = p``), which is how results
   already known (e.g. the top group probed for L_max) are reused.
4. Algorithm 1: binary search on m in [1, n] (lower midpoint); m = n (all singletons) is always
   feasible and never searched.  The DFS branches on the lowest-index uncovered name, trying the
   kept groups whose lowest member is that name (larger first, then better-ranked), then the
   singleton; it prunes branches that cannot reach exactly m groups.  A complete cover is verified
   group by group in cover order (the first failure rejects it, the rest of that cover are not
   verified; the failed group is skipped from then on); the first accepted cover is the answer for
   that m.  Feasible m -> search lower, else higher.
5. ``probes_per_round = k > 1``: the binary searches of steps 2-3 become (k+1)-ary searches (k
   evenly spaced probes per round), and a candidate cover requests up to k of its unverified groups
   at once.  Algorithm 1's search over m stays binary.
6. ``all_partitions=True``: after the minimal m is found, every cover with m groups from the
   kept groups is enumerated and verified; all accepted ones are returned (this costs extra
   verifications; off by default).

Strategy ``"lazy"`` (default)
-----------------------------
Uses what verified results imply and verifies only what a candidate partition needs:

* Pair cut: binary search of Λ_2 (pairs sorted by distance) for the last feasible pair, as in
  step 3 (about log2(n(n-1)/2) verifications).
* Presumed-feasible pairs: known pairs by their result; pairs inside a verified-feasible group
  (subsets of a feasible group are presumed feasible, drops are usually monotone); otherwise pairs
  ranked up to the cut.
* Presumed-feasible groups (size >= 3): every group that is verified feasible, plus every clique
  of the presumed pair graph that is neither a known-infeasible group nor a superset of one
  (a failing group makes its supersets infeasible).  No other size is ever probed.
* Risk of a group: its largest pairwise distance (verified-feasible groups have risk -1, so they
  are reused first).
* Loop: m* = the fewest groups that cover all names with presumed-feasible groups and singletons
  (found upward from ceil(n / largest presumed group)); among covers with at most m* groups pick
  the one whose largest risk is smallest (binary search on the risk threshold; DFS order larger
  groups first, then lower risk).  Verify its unverified groups, riskiest first (k per round).
  If all pass, that is the answer; a failure removes the group and its supersets and the loop
  replans (m* can only grow).  Termination: each round verifies a new group; the group lattice
  is finite and all singletons are always a valid cover.
* Phase 2 (noise makes the cut fuzzy, and a group's drop has its own noise): while a cover with
  one group fewer than the best verified one exists under a widened presumption, verify it
  (riskiest group first).  Widened presumption: unknown pairs up to ``len(pairs) // WINDOW_DIV``
  (10) ranks past the cut are presumed feasible, and a known-infeasible *pair* that failed by at
  most ``MARGIN`` (0.15 dB, about the PSNR noise of a verification) no longer rules out its
  supersets.  Stops when no such cover exists.
* ``probes_per_round = k``: (k+1)-ary pair cut; up to k unverified groups of the chosen cover per
  round.  ``all_partitions``: all covers with m* groups from the presumed family, each verified.

Known limitation of "lazy": it presumes a group feasible iff its pairs are (drops dominated by the
worst pair, as with ``dP = f(max pairwise distance)``).  If the drop depends on the *mean* distance,
a group containing one bad pair may be feasible and lazy may miss it (it still returns a verified,
feasible partition).

``SearchResult.rounds`` is filled by :func:`search` (a pure planner cannot know how its past
requests were batched); :meth:`Planner.next` leaves it at 0.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

import numpy as np

__all__ = ["SearchResult", "rank_groups", "Planner", "search"]

_ROUND = 9  # decimals: means (and variances) equal after rounding are "close"


@dataclass
class SearchResult:
    partition: list[frozenset[str]]
    verified: dict[frozenset[str], float]
    n_evaluations: int
    rounds: int
    all_partitions: list[list[frozenset[str]]] = field(default_factory=list)


def _check_distances(names: list[str], distances) -> np.ndarray:
    d = np.asarray(distances, dtype=float)
    n = len(names)
    if d.shape != (n, n):
        raise ValueError(f"distances must be {n}x{n}, got {d.shape}")
    if len(set(names)) != n:
        raise ValueError("names must be unique")
    return d


def _rank_indices(d: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ranked L-subsets of range(n) (n = len(d)): (combos [C, L] int, mean, variance), in rank
    order.  ``d`` must already be in name order (combinations come out lexicographic, the final
    sort is stable, so lexicographic order breaks the remaining ties)."""
    n = len(d)
    combos = np.array(list(itertools.combinations(range(n), size)), dtype=np.int64).reshape(-1, size)
    if size < 2:
        z = np.zeros(len(combos))
        return combos, z, z.copy()
    s = np.zeros(len(combos))
    s2 = np.zeros(len(combos))
    p = 0
    for i in range(size):
        for j in range(i + 1, size):
            v = d[combos[:, i], combos[:, j]]
            s += v
            s2 += v * v
            p += 1
    mean = s / p
    var = np.maximum(s2 / p - mean * mean, 0.0)
    order = np.lexsort((np.round(var, _ROUND), np.round(mean, _ROUND)))
    return combos[order], mean[order], var[order]


def rank_groups(names, distances, size) -> list[tuple[frozenset[str], float, float]]:
    """Λ_size: every ``size``-subset of ``names`` with the mean and (population) variance of its
    pairwise distances, sorted by mean, then variance, then sorted member names."""
    names = list(names)
    d = _check_distances(names, distances)
    d = (d + d.T) / 2
    perm = sorted(range(len(names)), key=lambda i: names[i])
    sn = [names[i] for i in perm]
    combos, mean, var = _rank_indices(d[np.ix_(perm, perm)], size)
    return [(frozenset(sn[i] for i in c), float(m), float(v)) for c, m, v in zip(combos.tolist(), mean, var)]


class _Need(Exception):
    def __init__(self, masks: list[int]):
        super().__init__()
        self.masks = masks


def _popcount(x: int) -> int:
    return bin(x).count("1")


def _lowbit_index(x: int) -> int:
    return (x & -x).bit_length() - 1


class Planner:
    """Pure planner; see the module docstring."""

    MARGIN = 0.15  # dB: lazy phase 2 lets a pair failing by <= MARGIN into larger groups
    WINDOW_DIV = 10  # lazy phase 2: unknown pairs up to len(pairs) // WINDOW_DIV ranks past the cut

    def __init__(self, names, distances, delta, strategy="lazy", probes_per_round=1, all_partitions=False):
        names = list(names)
        d = _check_distances(names, distances)
        if strategy not in ("lazy", "paper"):
            raise ValueError(f"unknown strategy {strategy!r}")
        if probes_per_round < 1:
            raise ValueError("probes_per_round must be >= 1")
        self.names = sorted(names)  # internal index = position in sorted names
        perm = [names.index(x) for x in self.names]
        d = (d + d.T) / 2
        self.d = d[np.ix_(perm, perm)]
        self.n = len(names)
        self.delta = float(delta)
        self.strategy = strategy
        self.k = int(probes_per_round)
        self.all_partitions = bool(all_partitions)
        self._index = {x: i for i, x in enumerate(self.names)}
        self._ranks: dict[int, tuple[list[int], dict[int, int]]] = {}
        self._known: dict[int, float] = {}

    # ----------------------------------------------------------------- helpers
    def _mask(self, group) -> int:
        m = 0
        for x in group:
            m |= 1 << self._index[x]
        return m

    def _fs(self, mask: int) -> frozenset[str]:
        return frozenset(self.names[i] for i in range(self.n) if mask >> i & 1)

    def _rank(self, size: int) -> tuple[list[int], dict[int, int]]:
        if size not in self._ranks:
            combos, _, _ = _rank_indices(self.d, size)
            masks = (
                ((np.int64(1) << combos).sum(axis=1)).tolist()
                if self.n < 63
                else [sum(1 << int(i) for i in c) for c in combos]
            )
            self._ranks[size] = (masks, {m: p for p, m in enumerate(masks)})
        return self._ranks[size]

    def _feasible(self, mask: int) -> bool | None:
        if mask & (mask - 1) == 0:
            return True
        v = self._known.get(mask)
        return None if v is None else v <= self.delta

    def _need(self, masks: list[int]) -> None:
        """Raise with the unknown ones among ``masks`` (first k, in order) if there are any."""
        unknown = []
        for m in masks:
            if m & (m - 1) and m not in self._known and m not in unknown:
                unknown.append(m)
        if unknown:
            raise _Need(unknown[: self.k])

    def _last_feasible(
        self, lo: int, hi: int, group_at: Callable[[int], int], known_pos: Callable[[], list[tuple[int, bool]]]
    ) -> int:
        """Largest index in [lo, hi] presumed feasible, assuming monotone feasibility; ``lo`` is
        a feasible (or sentinel) index.  (k+1)-ary search reusing known results."""
        while True:
            kp = [(p, ok) for p, ok in known_pos() if lo < p <= hi]
            bad = [p for p, ok in kp if not ok]
            if bad:
                hi = min(bad) - 1
            good = [p for p, ok in kp if ok and p <= hi]
            if good:
                lo = max(good)
            if lo >= hi:
                return lo
            if self.k == 1:
                probes = [(lo + hi + 1) // 2]
            else:
                span = hi - lo
                probes = sorted({lo + max(1, math.ceil(j * span / (self.k + 1))) for j in range(1, self.k + 1)})
                probes = [p for p in probes if lo < p <= hi]
            self._need([group_at(p) for p in probes])
            # all probes known now: the next iteration folds them in

    def _known_positions(self, size: int) -> list[tuple[int, bool]]:
        """``(position in the size-``size`` ranking, feasible)`` of every known group of that size:
        what :meth:`_last_feasible` folds in before probing."""
        _, pos = self._rank(size)
        return [(pos[m], v <= self.delta) for m, v in self._known.items() if m in pos]

    def _covers(self, cands: list[list[int]], m: int, exact: bool) -> Iterator[list[int]]:
        """Disjoint covers of all names with exactly (or at most) m groups; branch on the lowest
        uncovered name, trying ``cands[e]`` (groups whose lowest member is e) then {e}."""
        maxsize = max([1] + [_popcount(g) for c in cands for g in c])
        yield from self._extend_cover([], 0, cands, m, exact, maxsize)

    def _extend_cover(
        self, chosen: list[int], covered: int, cands: list[list[int]], m: int, exact: bool, maxsize: int
    ) -> Iterator[list[int]]:
        """The covers of :meth:`_covers` that extend ``chosen`` (whose union is ``covered``), in DFS
        order. Prunes when the names left cannot fit in the groups left (``maxsize`` names each) or,
        with ``exact``, are fewer than the groups left. ``chosen`` is extended and restored in place;
        each yielded cover is a copy."""
        rest = ((1 << self.n) - 1) & ~covered
        r = _popcount(rest)
        g = m - len(chosen)
        if r == 0:
            if not exact or g == 0:
                yield list(chosen)
            return
        if g <= 0 or r > g * maxsize or (exact and g > r):
            return
        e = _lowbit_index(rest)
        for grp in cands[e]:
            if grp & covered:
                continue
            if self._feasible(grp) is False:
                continue
            chosen.append(grp)
            yield from self._extend_cover(chosen, covered | grp, cands, m, exact, maxsize)
            chosen.pop()
        chosen.append(1 << e)
        yield from self._extend_cover(chosen, covered | (1 << e), cands, m, exact, maxsize)
        chosen.pop()

    def _by_lowest(self, groups: list[int]) -> list[list[int]]:
        cands: list[list[int]] = [[] for _ in range(self.n)]
        for g in groups:  # already in preference order
            cands[_lowbit_index(g)].append(g)
        return cands

    # ------------------------------------------------------------------ public
    def next(self, known: dict[frozenset[str], float]) -> list[frozenset[str]] | SearchResult:
        self._known = {}
        for g, v in known.items():
            msk = self._mask(g)
            if msk & (msk - 1):
                self._known[msk] = float(v)
        try:
            if self.n <= 1:
                parts, allp = ([(1 << self.n) - 1] if self.n else []), []
            elif self.strategy == "paper":
                parts, allp = self._paper()
            else:
                parts, allp = self._lazy()
        except _Need as need:
            return [self._fs(m) for m in need.masks]
        verified = {g: float(v) for g, v in known.items() if len(g) > 1}
        return SearchResult(
            partition=[self._fs(m) for m in parts],
            verified=verified,
            n_evaluations=len(verified),
            rounds=0,
            all_partitions=[[self._fs(m) for m in p] for p in allp],
        )

    # ------------------------------------------------------------------- paper
    def _verify_cover(self, cover: list[int]) -> bool:
        for g in cover:
            if self._feasible(g) is False:
                return False
        self._need(list(cover))
        return all(self._feasible(g) for g in cover)

    def _top(self, size: int) -> int:
        """The best-ranked group of Λ_size (the rankings are cached, so this is a look-up)."""
        return self._rank(size)[0][0]

    def _top_known(self) -> list[tuple[int, bool]]:
        """``(L, feasible)`` for every size L whose top-ranked group is known: the L_max search
        (step 2) treats sizes as positions."""
        out = []
        for size in range(2, self.n + 1):
            v = self._known.get(self._top(size))
            if v is not None:
                out.append((size, v <= self.delta))
        return out

    def _first_accepted(self, cands: list[list[int]], m: int) -> list[int] | None:
        """Algorithm 1's test of ``m``: the first cover with exactly ``m`` kept groups that verifies."""
        for cover in self._covers(cands, m, exact=True):
            if self._verify_cover(cover):
                return cover
        return None

    def _paper(self) -> tuple[list[int], list[list[int]]]:
        n = self.n
        lmax = self._last_feasible(1, n, self._top, self._top_known)
        kept: list[int] = []
        for size in range(lmax, 1, -1):  # larger groups first, then rank order
            masks, _ = self._rank(size)
            c = self._last_feasible(-1, len(masks) - 1, masks.__getitem__, partial(self._known_positions, size))
            kept.extend(masks[: c + 1])
        cands = self._by_lowest(kept)
        lo, hi = 1, n
        best = [1 << i for i in range(n)]
        while lo < hi:
            mid = (lo + hi) // 2
            cover = self._first_accepted(cands, mid)
            if cover is not None:
                hi, best = mid, cover
            else:
                lo = mid + 1
        allp = []
        if self.all_partitions:
            allp = [c for c in self._covers(cands, hi, exact=True) if self._verify_cover(c)]
        return best, allp

    # -------------------------------------------------------------------- lazy
    def _lazy(self) -> tuple[list[int], list[list[int]]]:
        pairs, _ = self._rank(2)
        cut = self._last_feasible(-1, len(pairs) - 1, pairs.__getitem__, partial(self._known_positions, 2))
        # phase 1: the fewest presumed-feasible groups, verified lazily
        family = self._presumed_family(pairs, cut)
        cover = self._best_cover(family, self.n)
        self._verify_riskiest_first(cover, family)
        # phase 2: try to beat it with pairs just past the cut (noise makes the cut fuzzy)
        window = cut + max(2, len(pairs) // self.WINDOW_DIV)
        while len(cover) > 1:
            wider = self._presumed_family(pairs, window, self.MARGIN)
            better = self._best_cover(wider, len(cover) - 1)
            if better is None:
                break
            self._verify_riskiest_first(better, wider)
            cover, family = better, wider
        return cover, self._lazy_all_partitions(family, len(cover)) if self.all_partitions else []

    def _max_pair_distance(self, mask: int) -> float:
        """A group's risk: the largest distance between two of its members."""
        idx = [b for b in range(self.n) if mask >> b & 1]
        return max(self.d[i, j] for i, j in itertools.combinations(idx, 2))

    def _presumed_family(self, pairs: list[int], limit: int, margin: float = 0.0) -> dict[int, float]:
        """Presumed-feasible groups (size >= 2) -> risk, with unknown pairs presumed feasible up to
        rank ``limit``; known failures by at most ``margin`` dB do not rule out their supersets."""
        feasible_known = [m for m, v in self._known.items() if v <= self.delta]
        infeasible_known = [m for m, v in self._known.items() if v > self.delta]
        # With margin 0 every failure blocks; with a margin, a pair that failed narrowly does not.
        blocking = [g for g in infeasible_known if self._known[g] > self.delta + margin or _popcount(g) > 2]
        adjacent = [0] * self.n  # presumed-feasible pair graph, as bit masks
        for rank, pair in enumerate(pairs):
            presumed = self._feasible(pair)
            if presumed is False and margin and self._known[pair] <= self.delta + margin:
                presumed = True
            if presumed is None:
                presumed = rank <= limit or any(pair & ~g == 0 for g in feasible_known)
            if presumed:
                i, j = [b for b in range(self.n) if pair >> b & 1]
                adjacent[i] |= 1 << j
                adjacent[j] |= 1 << i
        family: dict[int, float] = {}
        self._add_cliques(0, (1 << self.n) - 1, adjacent, blocking, family)
        for g in feasible_known:
            if not any(g & b == b and g != b for b in blocking):
                family[g] = -1.0  # verified feasible: reused first
        return family

    def _add_cliques(
        self, clique: int, candidates: int, adjacent: list[int], blocking: list[int], family: dict[int, float]
    ) -> None:
        """Add to ``family`` every unknown clique of the pair graph that extends ``clique`` with
        members of ``candidates`` and contains no blocking group."""
        while candidates:
            b = _lowbit_index(candidates)
            candidates &= candidates - 1
            grown = clique | (1 << b)
            if any(grown & g == g for g in blocking):
                continue
            if grown & (grown - 1) and grown not in self._known:
                family[grown] = self._max_pair_distance(grown)
            self._add_cliques(grown, candidates & adjacent[b], adjacent, blocking, family)

    def _best_cover(self, family: dict[int, float], m_max: int) -> list[int] | None:
        """Fewest groups (<= m_max) from ``family`` + singletons, then the smallest largest risk."""
        order = sorted(family, key=lambda g: (-_popcount(g), family[g], g))
        maxsize = max([1] + [_popcount(g) for g in family])
        m = max(1, math.ceil(self.n / maxsize))
        while m <= m_max and self._first_cover(order, m) is None:
            m += 1
        if m > m_max:
            return None
        risks = sorted(set(family.values()))
        lo, hi = -1, len(risks)
        while hi - lo > 1:  # binary search on the risk threshold
            mid = (lo + hi) // 2
            if self._first_cover([g for g in order if family[g] <= risks[mid]], m) is not None:
                hi = mid
            else:
                lo = mid
        threshold = risks[hi] if hi < len(risks) else math.inf
        return self._first_cover([g for g in order if family[g] <= threshold], m)

    def _first_cover(self, groups: list[int], m: int) -> list[int] | None:
        """The first cover (DFS order) with at most ``m`` of ``groups`` + singletons, or None."""
        return next(self._covers(self._by_lowest(groups), m, exact=False), None)

    def _verify_riskiest_first(self, cover: list[int], family: dict[int, float]) -> None:
        """Ask for the cover's unknown groups, riskiest first; once none is unknown, every group of
        the cover is known feasible (the family excludes failures)."""
        self._need(sorted((g for g in cover if g & (g - 1)), key=lambda g: -family[g]))

    def _lazy_all_partitions(self, family: dict[int, float], m: int) -> list[list[int]]:
        """Every cover with ``m`` groups from ``family``, each verified."""
        accepted = []
        order = sorted(family, key=lambda g: (-_popcount(g), family[g], g))
        for cover in self._covers(self._by_lowest(order), m, exact=True):
            self._verify_riskiest_first(cover, family)
            if all(self._feasible(g) for g in cover):
                accepted.append(cover)
        return accepted


def search(
    names: list[str], distances: np.ndarray, delta: float, evaluate: Callable[[frozenset[str]], float], **kwargs
) -> SearchResult:
    """Drive a :class:`Planner` with ``evaluate`` (the verification oracle) until it answers."""
    planner = Planner(names, distances, delta, **kwargs)
    known: dict[frozenset[str], float] = {}
    rounds = 0
    while True:
        out = planner.next(known)
        if isinstance(out, SearchResult):
            out.rounds = rounds
            out.n_evaluations = len(known)
            return out
        if not out:
            raise RuntimeError("planner requested nothing")
        rounds += 1
        for g in out:
            if g in known or len(g) < 2:
                raise RuntimeError(f"planner re-requested {sorted(g)}")
            known[g] = float(evaluate(g))
