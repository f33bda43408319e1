"""Tests of :mod:`crawler.tools`."""
