"""Helpers shared by the Python tests. Test modules import them from here (not from conftest:
tests/server has a conftest.py of its own, and pytest keeps one module named "conftest" at a time)."""
import subprocess
from pathlib import Path


def run_pagoda(binary: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=timeout)
