"""Tests of :mod:`crawler.parse`."""
