"""Tests of :mod:`crawler.store`."""
