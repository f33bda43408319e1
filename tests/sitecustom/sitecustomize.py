"""Imported at start-up by a Python subprocess of the tests (``tests/sitecustom`` is on its
``PYTHONPATH``): installs the DNS guard of ``tests/dnsguard.py`` when ``TESTS_DNSGUARD_LOG``
names the file where the parent test collects refused names. Does nothing otherwise."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

_log = os.environ.get("TESTS_DNSGUARD_LOG")
if _log:
    _spec = importlib.util.spec_from_file_location(
        "_tests_dnsguard", Path(__file__).resolve().parent.parent / "dnsguard.py"
    )
    if _spec is not None and _spec.loader is not None:
        _module = importlib.util.module_from_spec(_spec)
        sys.modules[_spec.name] = _module
        _spec.loader.exec_module(_module)
        _module.install(_log)
