"""What `restore test` writes for people to read, one job per module: `tables` (metrics.csv and
metrics.md), `charts` (a plot per metric), `render` (colour maps, text and indexed PNGs without a
plotting library), `figures` (per-image figures and the views of the web page) and `html` (the
self-contained index.html of each test set and of the run)."""
