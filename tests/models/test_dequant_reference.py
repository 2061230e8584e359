"""`pagoda dequant` against the gguf package's reference dequantization (gguf/quants.py), bit for bit.

(a) Every block type pagoda implements and the package can dequantize, on files written here with
    gguf.GGUFWriter: tensors quantized by the package where it can quantize the type, and random
    blocks (random quant and scale bytes with finite half-precision scales, which is a valid
    block) for every block type; the plain float types with every 16-bit pattern. Both the fastest
    kernels for this CPU and the portable scalar ones are checked.
(b) Every tensor of the two real models whose type pagoda implements, in the file's own layout.

Q8_K is not here: the package cannot dequantize it (it is an intermediate ggml format); the unit
tests check it from its definition."""
import struct
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q

from pagoda_testing import run_pagoda

BLOCK_TYPES = [Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K]
FLOAT_TYPES = [Q.F32, Q.F16, Q.BF16]
QUANTIZABLE = {Q.F32, Q.F16, Q.BF16, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0}
PAGODA_TYPES = set(BLOCK_TYPES) | set(FLOAT_TYPES)

# Byte offsets of the half-precision scales (d, and dmin or m) inside each block (ggml's structs).
HALF_SCALES = {
    Q.Q4_0: [0], Q.Q4_1: [0, 2], Q.Q5_0: [0], Q.Q5_1: [0, 2], Q.Q8_0: [0],
    Q.Q2_K: [80, 82], Q.Q3_K: [108], Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208],
}

# Shapes outermost first; the last dimension is a multiple of 256 so that every type fits.
SHAPES = [(256,), (5, 512), (2, 3, 768)]

# At most this many elements per `pagoda dequant` call and per reference chunk, to bound memory.
BATCH_ELEMENTS = 1 << 26
CHUNK_ELEMENTS = 1 << 22


def finite_halves(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random half-precision bit patterns, subnormals and zeros included, infinities and NaNs not."""
    h = rng.integers(0, 1 << 16, size=n, dtype=np.uint16)
    bad = (h & 0x7C00) == 0x7C00
    h[bad] &= np.uint16(0xBFFF)  # clear the top exponent bit: a finite value of the same sign
    return h


def random_blocks(rng: np.random.Generator, qtype: Q, shape) -> np.ndarray:
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    n_blocks = int(np.prod(shape)) // block_size
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for at in HALF_SCALES[qtype]:
        blocks[:, at:at + 2] = finite_halves(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
    return blocks.reshape(*shape[:-1], shape[-1] // block_size * type_size)


def synthetic_tensors(qtype: Q, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Tensors in their stored form: uint8 bytes for block types and bf16, else float arrays."""
    tensors = {}
    for i, shape in enumerate(SHAPES):
        if qtype in QUANTIZABLE:
            # Values over several orders of magnitude, some rows constant (zero scale).
            data = rng.standard_normal(shape).astype(np.float32) * np.float32(10.0 ** rng.integers(-4, 3))
            if len(shape) > 1:
                data[..., 0, :] = 0.0
            tensors[f"quantized.{i}"] = gguf.quants.quantize(data, qtype)
        if qtype in HALF_SCALES:
            tensors[f"random.{i}"] = random_blocks(rng, qtype, shape)
    if qtype == Q.F16:
        tensors["all_bits"] = np.arange(1 << 16, dtype=np.uint16).view(np.float16).reshape(256, 256)
    elif qtype == Q.BF16:
        tensors["all_bits"] = np.arange(1 << 16, dtype=np.uint16).view(np.uint8).reshape(256, 512)
    elif qtype == Q.F32:
        tensors["random_bits"] = rng.integers(0, 1 << 32, size=(64, 1024), dtype=np.uint32).view(np.float32)
    return tensors


def write_gguf(path: Path, qtype: Q, tensors: dict[str, np.ndarray]) -> None:
    writer = gguf.GGUFWriter(str(path), "llama")
    # Metadata of several kinds, so that stored_tensors() has to skip them, and a non-default
    # alignment for some files.
    writer.add_array("test.strings", ["a", "bc", "", "\u00e9t\u00e9"])
    writer.add_array("test.ints", [1, 2, 3])
    writer.add_float32("test.float", 0.5)
    writer.add_string("test.string", "x" * 100)
    if int(qtype) % 2 == 1:
        writer.data_alignment = 64
        writer.add_custom_alignment(64)
    for name, data in tensors.items():
        if data.dtype == np.uint8:
            writer.add_tensor(name, data, raw_dtype=qtype)
        else:
            writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@dataclass
class StoredTensor:
    name: str
    qtype: Q
    n_elements: int
    data: np.ndarray  # the stored bytes, uint8, one row (innermost dimension) per line


# Sizes of the fixed-size GGUF metadata value types, by type id.
_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def stored_tensors(path: Path) -> list[StoredTensor]:
    """The tensor table of a GGUF file, read directly from its header.

    gguf.GGUFReader builds a numpy object for every metadata string, which takes tens of seconds
    on a 262k-token vocabulary; this reads only what locating the tensors needs, and the synthetic
    test checks that it agrees with GGUFReader."""
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    buf = memoryview(raw)
    pos = 0

    def take(fmt: str):
        nonlocal pos
        values = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return values[0] if len(values) == 1 else values

    def take_string() -> bytes:
        nonlocal pos
        n = take("Q")
        pos += n
        return bytes(buf[pos - n:pos])

    def skip_value(vtype: int):
        nonlocal pos
        if vtype in _SCALAR_SIZES:
            pos += _SCALAR_SIZES[vtype]
        elif vtype == 8:
            length = take("Q")  # read before `pos` is: take() moves it
            pos += length
        elif vtype == 9:
            etype, count = take("IQ")
            if etype in _SCALAR_SIZES:
                pos += count * _SCALAR_SIZES[etype]
            else:
                for _ in range(count):
                    skip_value(etype)
        else:
            raise ValueError(f"{path}: unknown metadata type {vtype}")

    magic, version, n_tensors, n_kv = take("4sIQQ")
    assert magic == b"GGUF" and version in (2, 3), path
    alignment = 32
    for _ in range(n_kv):
        key = take_string()
        vtype = take("I")
        if key == b"general.alignment" and vtype == 4:
            alignment = take("I")
        else:
            skip_value(vtype)
    infos = []
    for _ in range(n_tensors):
        name = take_string().decode()
        n_dims = take("I")
        ne = [take("Q") for _ in range(n_dims)]
        qtype, offset = take("IQ")
        infos.append((name, ne, Q(qtype), offset))
    data_start = -(-pos // alignment) * alignment
    tensors = []
    for name, ne, qtype, offset in infos:
        block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
        n_elements = int(np.prod(ne, dtype=np.int64))
        row_bytes = ne[0] // block_size * type_size
        start = data_start + offset
        data = raw[start:start + n_elements // block_size * type_size].reshape(-1, row_bytes)
        tensors.append(StoredTensor(name, qtype, n_elements, data))
    return tensors


def reference_chunks(tensor: StoredTensor):
    """The reference's float32 values of a tensor, a bounded number of rows at a time, as uint32
    bit patterns."""
    rows = tensor.data
    row_elements = tensor.n_elements // rows.shape[0]
    step = max(1, CHUNK_ELEMENTS // row_elements)
    for start in range(0, rows.shape[0], step):
        values = gguf.quants.dequantize(rows[start:start + step], tensor.qtype)
        assert values.dtype == np.float32
        yield values.reshape(-1).view(np.uint32)


def compare_tensors(pagoda_bin: Path, path: Path, tensors, out: Path, scalar: bool = False) -> None:
    """Runs `pagoda dequant` on `tensors` (StoredTensors of `path`) in batches and compares each
    with the reference bit for bit (NaNs included: the uint32 patterns must match)."""
    batches, batch, size = [], [], 0
    for t in tensors:
        if batch and size + int(t.n_elements) > BATCH_ELEMENTS:
            batches.append(batch)
            batch, size = [], 0
        batch.append(t)
        size += int(t.n_elements)
    if batch:
        batches.append(batch)

    for batch in batches:
        args = ["dequant", str(path), *[t.name for t in batch], "--out", str(out)]
        if scalar:
            args.append("--scalar")
        result = run_pagoda(pagoda_bin, *args, timeout=600)
        assert result.returncode == 0, result.stderr
        ours = np.memmap(out, dtype="<u4", mode="r")
        assert ours.size == sum(int(t.n_elements) for t in batch)
        offset = 0
        for t in batch:
            tensor_start = offset
            for ref in reference_chunks(t):
                got = ours[offset:offset + ref.size]
                if not np.array_equal(got, ref):
                    bad = int(np.flatnonzero(got != ref)[0])
                    pytest.fail(f"{path.name}: {t.name} ({t.qtype.name}) differs at element "
                                f"{offset - tensor_start + bad}: pagoda {got[bad]:#010x}, "
                                f"reference {ref[bad]:#010x}")
                offset += ref.size
        del ours
        out.unlink()


@pytest.mark.parametrize("kernels", ["fastest", "scalar"])
@pytest.mark.parametrize("qtype", FLOAT_TYPES + BLOCK_TYPES, ids=lambda q: q.name)
def test_synthetic_tensors_match_reference(pagoda_bin, tmp_path, qtype, kernels):
    rng = np.random.default_rng(int(qtype) * 7919 + 1)
    tensors = synthetic_tensors(qtype, rng)
    path = tmp_path / f"{qtype.name}.gguf"
    write_gguf(path, qtype, tensors)
    stored = stored_tensors(path)
    # The header reader used for the real models agrees with the package's GGUFReader.
    reader = gguf.GGUFReader(str(path))
    assert [t.name for t in stored] == [t.name for t in reader.tensors] and set(tensors) == {t.name for t in stored}
    for ours, theirs in zip(stored, reader.tensors):
        assert ours.qtype == theirs.tensor_type == qtype
        assert ours.n_elements == int(theirs.n_elements)
        assert np.array_equal(ours.data.reshape(-1), theirs.data.view(np.uint8).reshape(-1))
    compare_tensors(pagoda_bin, path, stored, tmp_path / "out.f32", scalar=kernels == "scalar")


@pytest.mark.parametrize("model", ["default_model", "gemma_model"])
def test_real_model_tensors_match_reference(request, pagoda_bin, tmp_path, model):
    path = request.getfixturevalue(model)
    stored = stored_tensors(path)
    tensors = [t for t in stored if t.qtype in PAGODA_TYPES]
    # Every tensor of these models has a type pagoda implements; a new file that breaks this
    # should fail here rather than pass on a subset.
    assert len(tensors) == len(stored), sorted({t.qtype.name for t in stored} - {q.name for q in PAGODA_TYPES})
    compare_tensors(pagoda_bin, path, tensors, tmp_path / "out.f32")


def test_unknown_tensor_and_unsupported_type_are_errors(pagoda_bin, tmp_path):
    path = tmp_path / "mixed.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("ok", np.ones((2, 32), dtype=np.float32))
    # TQ2_0 is a valid GGUF type that pagoda does not dequantize.
    block_size, type_size = gguf.GGML_QUANT_SIZES[Q.TQ2_0]
    writer.add_tensor("ternary", np.zeros((1, type_size), dtype=np.uint8), raw_dtype=Q.TQ2_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    out = tmp_path / "out.f32"

    result = run_pagoda(pagoda_bin, "dequant", str(path), "ok", "missing", "--out", str(out))
    assert result.returncode == 1
    assert "missing" in result.stderr and str(path) in result.stderr
    assert not out.exists()

    result = run_pagoda(pagoda_bin, "dequant", str(path), "ternary", "--out", str(out))
    assert result.returncode == 1
    assert "tq2_0" in result.stderr and "ternary" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

    result = run_pagoda(pagoda_bin, "dequant", str(path), "ok", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert np.array_equal(np.fromfile(out, dtype="<f4"), np.ones(64, dtype=np.float32))
