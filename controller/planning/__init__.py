"""The rolling plan on the grid: forecasts, the plan worker, and its offline twin.

The LP itself and the per-cycle dispatch that follows its targets are pure numpy
and live in :mod:`dispatch.plan_lp`, :mod:`dispatch.planned` and :mod:`dispatch.rolling`.
"""
