"""Monitoring and reporting: the instance list, the figures (Kennzahlen) with small-cell suppression,
per-element durations, overdue work, and the facts table they read (docs/monitoring.md).

No Flask here: the web app's monitor pages and the benchmarks call these functions.
"""
