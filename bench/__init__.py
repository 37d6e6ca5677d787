"""Benchmarks: the operator at scale against the Helm-hook way, and the reference app against a bare WSGI app.

`make bench` runs `python -m bench`; results land in bench/out/ (JSON) and bench/RESULTS.md.
"""
