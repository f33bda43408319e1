"""Tests of :mod:`crawler.commands`."""
