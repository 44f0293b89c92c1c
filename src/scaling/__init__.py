"""scaling: a scaling-law study of small language models on structured JSON extraction.

Pipeline (each part depends only on the parts before it):
data -> models -> module (training) -> evaluate -> results.json -> fit -> figures.
"""

__version__ = "0.1.0"
