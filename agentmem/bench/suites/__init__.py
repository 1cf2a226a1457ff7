"""The evaluation suites of issue 7: each one runs on the real model and returns a JSON-serialisable dict.

`report.py` turns the JSON files they leave in docs/results/ into plots and docs/RESULTS.md.
"""

from .ablation import ablation
from .adapter_capacity import adapter_capacity
from .capacity import capacity, retention
from .counterfact import counterfact
from .retrieval import retrieval
from .sweeps import sweeps
from .week import week

