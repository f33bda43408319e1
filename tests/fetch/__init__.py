"""Tests of :mod:`crawler.fetch`."""
