"""Shared pytest fixtures: the pagoda binary under test and the cached real models."""
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _binary() -> Path:
    env = os.environ.get("PAGODA_BIN")
    if env:
        return Path(env)
    for preset in ("debug", "release"):
        candidate = ROOT / "build" / preset / "tools" / "pagoda" / "pagoda"
        if candidate.exists():
            return candidate
    raise RuntimeError("no pagoda binary: build a preset first or set PAGODA_BIN")


@pytest.fixture(scope="session")
def pagoda_bin() -> Path:
    return _binary()


@pytest.fixture(scope="session")
def pagoda_release_bin() -> Path:
    """The optimised binary, for tests that measure behaviour under load (the sanitized one is
    about ten times slower): PAGODA_RELEASE_BIN, else build/release, else PAGODA_BIN."""
    env = os.environ.get("PAGODA_RELEASE_BIN")
    if env:
        return Path(env)
    candidate = ROOT / "build" / "release" / "tools" / "pagoda" / "pagoda"
    if candidate.exists():
        return candidate
    return _binary()


def _model(name: str) -> Path:
    cache = Path(os.environ.get("PAGODA_MODEL_CACHE", ROOT / "models"))
    files = {"smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3": "gemma-3-270m-Q4_K_M.gguf"}
    path = cache / files[name]
    if not path.exists():
        subprocess.run(["python3", str(ROOT / "scripts" / "fetch_models.py"), "--cache", str(cache), name], check=True)
    return path


@pytest.fixture(scope="session")
def default_model() -> Path:
    return _model("smollm2")


@pytest.fixture(scope="session")
def gemma_model() -> Path:
    return _model("gemma3")


from pagoda_testing import run_pagoda  # noqa: E402,F401  (kept importable from conftest too)
