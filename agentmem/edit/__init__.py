"""The wake edit's numerics: MEMIT's keys, target values and the covariance-regularised, constrained solve.

No disk, queue or server here; `config.py` is torch-free.
"""
