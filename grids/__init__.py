"""GRIDS: grouped multiple-degradation restoration with image degradation similarity.

The package holds all logic of the pipeline, one small module per stage; ``workflow/`` only
wires the stages together with Snakemake.
"""

__version__ = "0.1.0"
