"""``restore sweep``: one training per cell of a grid of options, each tested, in one table and plots.

* `restore.sweep.grid` -- the sweep definition: grid axes, cells, their names and validation;
* `restore.sweep.runner` -- running the cells as ``restore train`` processes, resumable;
* `restore.sweep.evaluate` -- scoring trained cells: test sets, parameters, FLOPs; latency of all at once;
* `restore.sweep.report` -- ``sweep.csv``, ``sweep.md`` and the plots with the Pareto front.
"""
