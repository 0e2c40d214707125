"""Firebreak's benchmarks: load against a real `firebreak serve`, reported in REPORT.md.

Benchmarks are not tests: they print a table and rewrite their own section of
`benchmarks/REPORT.md`. Run them all with `python -m benchmarks`, or one with
`python -m benchmarks.<module>`.
"""
