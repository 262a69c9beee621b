"""The task-grouping search (docs/method.md §5), in three modules named by their job:

* :mod:`grids.grouping.names`: a group's canonical name (members sorted, joined by ``+``), kept
  free of heavy imports so that the workflow can use it when it is parsed;
* :mod:`grids.grouping.planner`: the pure planner, ``known results -> next groups to verify |
  final partition``, and :func:`search`, which drives it with a verification oracle;
* :mod:`grids.grouping.rounds`: the workflow stage (``python -m grids.grouping.rounds``): drops
  from evaluation tables, one planner step per Snakemake round, the search's tables and plot.

``from grids.grouping import search`` is the public entry point::

    result = search(names, distances_sym, delta=0.7, evaluate=train_and_measure_drop)
"""

from .names import SEPARATOR, group_members, group_name, group_pattern
from .planner import Planner, SearchResult, rank_groups, search

__all__ = [
    "SEPARATOR",
    "Planner",
    "SearchResult",
    "group_members",
    "group_name",
    "group_pattern",
    "rank_groups",
    "search",
]
