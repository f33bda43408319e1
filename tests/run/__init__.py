"""Tests of :mod:`crawler.run`."""
