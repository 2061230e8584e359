"""`pagoda tensors` on the real GGUF models against the reference reader (the `gguf` package):
every tensor's name, type, shape, offset, size and an XXH64 checksum of its bytes."""
import json
import subprocess

import gguf
import numpy as np
import pytest
import xxhash


@pytest.mark.parametrize("model", ["default_model", "gemma_model"])
def test_tensors_match_gguf_reader(pagoda_bin, request, model):
    path = request.getfixturevalue(model)
    proc = subprocess.run([str(pagoda_bin), "tensors", "--json", str(path)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout)
    reader = gguf.GGUFReader(str(path))
    assert listing["format"] == "gguf"
    assert listing["data_offset"] == reader.data_offset
    assert listing["alignment"] == reader.alignment
    assert len(listing["tensors"]) == len(reader.tensors)
    for got, ref in zip(listing["tensors"], reader.tensors):
        assert got["name"] == ref.name
        assert got["dtype"] == ref.tensor_type.name.lower(), ref.name
        # GGUF lists dimensions innermost first; pagoda outermost first.
        assert got["shape"] == [int(d) for d in reversed(ref.shape)], ref.name
        assert got["offset"] == ref.data_offset, ref.name
        assert got["nbytes"] == ref.n_bytes, ref.name
        raw = np.ascontiguousarray(ref.data).view(np.uint8)
        assert got["xxh64"] == xxhash.xxh64(raw).hexdigest(), ref.name
