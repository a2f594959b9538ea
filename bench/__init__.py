"""Benchmarks of the add-on, run by hand (`python -m bench.run_all`, `make bench`); see docs/benchmarks.md.

Every figure is a ratio against a baseline measured in the same run on the same machine.
"""
