"""``restore sweep``: one training per cell of a grid of options, each tested, in one table and plots.

* `restore.sweep.grid` -- the sweep definition: grid axes, cells, their names and validation;
* `restore.sweep.runner` -- running the cells as ``restore train`` processes, resumable;
* `restore.sweep.evaluate` -- scoring a trained cell: test sets, parameters, FLOPs, latency;
* `restore.sweep.report` -- ``sweep.csv``, ``sweep.md`` and the plots with the Pareto front.
"""
