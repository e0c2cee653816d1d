"""The outputs, rebuilt from the run folder's files: the tables (tables.py: formats; assemble.py:
their rows), the figures (figures.py: which, with their captions; drawing.py: how) and the HTML
report (report.py). Nothing here runs the pipeline."""
