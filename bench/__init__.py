"""The benchmark suite (issue 8): ``python -m bench [--quick] [--scenario NAME]``.

Modules: :mod:`bench.sitegen` (deterministic sites), :mod:`bench.servers` (nginx and the
pure-Python servers, loopback only), :mod:`bench.measure` (running peers as subprocesses and
measuring them), :mod:`bench.scenarios` (the six scenarios), :mod:`bench.profile` (cProfile of
the crawler on scenario 1), ``bench/peers/`` (Scrapy and the plain pattern). Results are saved
as JSON under ``bench/results/`` (not committed). See ``docs/performance.md``.
"""
