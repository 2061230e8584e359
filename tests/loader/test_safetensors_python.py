"""pagoda's safetensors reader against the reference implementation (the `safetensors` package).

Files are written by the reference writer (and sharded by `huggingface_hub`), then listed with
`pagoda tensors --json`; names, dtypes, shapes, byte ranges and XXH64 checksums of the bytes must
match what the reference wrote and what the reference reader reads back. Malformed files that
the reference rejects must be rejected by pagoda too, with a one-line error naming the file.
"""
import json
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import safetensors
import xxhash
from huggingface_hub import split_state_dict_into_shards_factory
from safetensors.numpy import save_file

# The reference's dtype names and pagoda's.
DTYPES = {
    "F32": "f32", "F16": "f16", "BF16": "bf16", "F64": "f64", "I8": "i8", "I16": "i16",
    "I32": "i32", "I64": "i64", "U8": "u8", "BOOL": "bool",
}


def pagoda_tensors(pagoda_bin: Path, path: Path) -> dict:
    proc = subprocess.run([str(pagoda_bin), "tensors", "--json", str(path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def pagoda_error(pagoda_bin: Path, path: Path) -> str:
    proc = subprocess.run([str(pagoda_bin), "tensors", "--json", str(path)], capture_output=True, text=True,
                          timeout=120)
    # 1 is pagoda's error exit; a signal (negative) would mean a crash.
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def check_against_reference(listing: dict, files: list[Path]) -> None:
    """Every tensor the reference reader finds in `files`, and nothing else, with equal contents."""
    expected = {}
    for f in files:
        raw = f.read_bytes()
        for name, info in safetensors.deserialize(raw):
            assert name not in expected
            expected[name] = (str(f), info)
    got = {t["name"]: t for t in listing["tensors"]}
    assert sorted(got) == sorted(expected)
    for name, (path, info) in expected.items():
        t = got[name]
        assert t["file"] == path, name
        assert t["dtype"] == DTYPES[info["dtype"]], name
        assert t["shape"] == list(info["shape"]), name
        data = bytes(info["data"])
        assert t["nbytes"] == len(data), name
        assert t["xxh64"] == xxhash.xxh64(data).hexdigest(), name
        # The reported offset is where those bytes really are.
        with open(path, "rb") as fh:
            fh.seek(t["offset"])
            assert fh.read(t["nbytes"]) == data, name


def reference_serialize(specs: dict) -> bytes:
    """The reference writer on raw buffers, for dtypes numpy lacks (BF16, F8, ...).
    `specs` maps a name to (dtype name as the reference spells it, shape, numpy buffer)."""
    if hasattr(safetensors, "TensorSpec"):  # safetensors >= 0.8 takes pointers
        return bytes(safetensors.serialize({
            name: safetensors.TensorSpec(dtype=dtype, shape=list(shape), data_ptr=buf.ctypes.data, data_len=buf.nbytes)
            for name, (dtype, shape, buf) in specs.items()}))
    return bytes(safetensors.serialize({
        name: {"dtype": dtype, "shape": list(shape), "data": buf.tobytes()} for name, (dtype, shape, buf) in specs.items()}))


def random_arrays(rng: np.random.Generator) -> dict[str, np.ndarray]:
    shapes = [(), (0,), (3, 0, 2), (5,), (2, 3), (7, 13), (1, 2, 1, 2, 1, 2, 1, 2)]
    arrays = {}
    for dtype in (np.float32, np.float16, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.bool_):
        for i, shape in enumerate(shapes):
            if np.dtype(dtype).kind == "f":
                a = rng.standard_normal(shape).astype(dtype)
            elif dtype is np.bool_:
                a = rng.integers(0, 2, shape).astype(np.bool_)
            else:
                info = np.iinfo(dtype)
                a = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
            arrays[f"model.layers.{i}.{np.dtype(dtype).name}"] = a
    return arrays


def test_every_numpy_dtype_and_shape(pagoda_bin, tmp_path):
    rng = np.random.default_rng(1234)
    arrays = random_arrays(rng)
    arrays["embed_tokens.wëight"] = rng.standard_normal((4, 8)).astype(np.float32)  # non-ASCII name
    path = tmp_path / "model.safetensors"
    save_file(arrays, str(path), metadata={"format": "np", "note": "ünïcode"})

    listing = pagoda_tensors(pagoda_bin, path)
    assert listing["format"] == "safetensors"
    assert len(listing["files"]) == 1
    assert listing["files"][0]["metadata"] == {"format": "np", "note": "ünïcode"}
    check_against_reference(listing, [path])
    # And directly against the arrays that were saved.
    got = {t["name"]: t for t in listing["tensors"]}
    for name, a in arrays.items():
        assert got[name]["shape"] == list(a.shape)
        assert got[name]["xxh64"] == xxhash.xxh64(np.ascontiguousarray(a).tobytes()).hexdigest()

    # The folder form finds model.safetensors.
    folder = pagoda_tensors(pagoda_bin, tmp_path)
    assert folder["tensors"] == listing["tensors"]


def test_bf16_and_raw_specs(pagoda_bin, tmp_path):
    """BF16 has no numpy type; the reference serializer takes raw buffers for it."""
    bits = np.arange(24, dtype=np.uint16) * 977
    half = np.arange(6, dtype=np.float16) / 3
    path = tmp_path / "bf16.safetensors"
    path.write_bytes(reference_serialize({"bf16.weight": ("bfloat16", [4, 6], bits), "f16.bias": ("float16", [6], half)}))
    listing = pagoda_tensors(pagoda_bin, path)
    check_against_reference(listing, [path])
    got = {t["name"]: t for t in listing["tensors"]}
    assert got["bf16.weight"]["dtype"] == "bf16"
    assert got["bf16.weight"]["xxh64"] == xxhash.xxh64(bits.tobytes()).hexdigest()


@pytest.mark.parametrize("spec_dtype,st_dtype", [("uint16", "U16"), ("uint32", "U32"), ("uint64", "U64"),
                                                 ("float8_e4m3fn", "F8_E4M3"), ("float8_e5m2", "F8_E5M2")])
def test_dtypes_pagoda_cannot_hold_are_refused_clearly(pagoda_bin, tmp_path, spec_dtype, st_dtype):
    buf = np.zeros(8, dtype=np.uint8)
    size = {"U16": 2, "U32": 4, "U64": 8}.get(st_dtype, 1)
    path = tmp_path / "x.safetensors"
    path.write_bytes(reference_serialize({"x": (spec_dtype, [8 // size], buf)}))
    assert safetensors.deserialize(path.read_bytes())[0][1]["dtype"] == st_dtype
    err = pagoda_error(pagoda_bin, path)
    assert str(path) in err
    assert f"unsupported dtype '{st_dtype}'" in err


def test_sharded_checkpoint(pagoda_bin, tmp_path):
    rng = np.random.default_rng(7)
    state = {f"model.layers.{i}.mlp.weight": rng.standard_normal((16, 16)).astype(np.float32) for i in range(6)}
    state["lm_head.weight"] = rng.standard_normal((8, 16)).astype(np.float16)
    split = split_state_dict_into_shards_factory(state, get_storage_size=lambda a: a.nbytes,
                                                 filename_pattern="model{suffix}.safetensors", max_shard_size=2500)
    assert split.is_sharded and len(split.filename_to_tensors) >= 3
    for filename, names in split.filename_to_tensors.items():
        save_file({n: state[n] for n in names}, str(tmp_path / filename), metadata={"format": "np"})
    index = {"metadata": split.metadata, "weight_map": split.tensor_to_filename}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))

    listing = pagoda_tensors(pagoda_bin, tmp_path)
    assert listing["index"] == str(tmp_path / "model.safetensors.index.json")
    assert listing["index_metadata"] == json.loads(json.dumps(split.metadata))
    shard_paths = sorted(tmp_path / f for f in split.filename_to_tensors)
    assert [f["path"] for f in listing["files"]] == [str(p) for p in shard_paths]
    check_against_reference(listing, shard_paths)
    for t in listing["tensors"]:
        assert t["file"] == str(tmp_path / split.tensor_to_filename[t["name"]])

    # A shard that the index does not account for fully is refused.
    extra = dict(split.tensor_to_filename)
    moved = next(iter(extra))
    extra[moved] = next(f for f in split.filename_to_tensors if f != extra[moved])
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": extra}))
    err = pagoda_error(pagoda_bin, tmp_path)
    assert "model.safetensors.index.json" in err and f"'{moved}'" in err


def raw_file(header: bytes | str, data: bytes = b"") -> bytes:
    if isinstance(header, str):
        header = header.encode()
    return struct.pack("<Q", len(header)) + header + data


def entry(name="a", dtype="U8", shape="[4]", offsets="[0,4]") -> str:
    return f'"{name}":{{"dtype":"{dtype}","shape":{shape},"data_offsets":{offsets}}}'


# Files that the reference rejects; pagoda must reject each of them, with the given reason.
MALFORMED = {
    "too_short": (b"\x01\x00\x00", "too small for the 8-byte header length"),
    "length_past_eof": (struct.pack("<Q", 1000) + b"{}", "runs past the end of the file"),
    "header_too_large": (struct.pack("<Q", 100_000_001) + b"{}", "exceeds the limit"),
    "not_json": (raw_file("{nope}"), "invalid JSON"),
    "trailing_nul": (raw_file(b"{}\0\0"), "NUL byte"),
    "trailing_comma": (raw_file("{" + entry() + ",}", bytes(4)), "invalid JSON"),
    "invalid_utf8": (raw_file(b'{"a\xff":{}}'), "invalid JSON"),
    "entry_not_object": (raw_file('{"a":[1]}'), "entry is an array, not an object"),
    "missing_dtype": (raw_file('{"a":{"shape":[4],"data_offsets":[0,4]}}', bytes(4)), "missing field 'dtype'"),
    "unknown_dtype": (raw_file("{" + entry(dtype="F33") + "}", bytes(4)), "unknown dtype 'F33'"),
    "negative_dim": (raw_file("{" + entry(shape="[-4]") + "}", bytes(4)), "negative dimension -4"),
    "negative_zero_dim": (raw_file("{" + entry(shape="[-0]", offsets="[0,0]") + "}"), "negative dimension -0"),
    "float_dim": (raw_file("{" + entry(shape="[4.0]") + "}", bytes(4)), "not a non-negative integer"),
    "one_offset": (raw_file("{" + entry(offsets="[0]") + "}", bytes(4)), "data_offsets must be [begin, end]"),
    "size_mismatch": (raw_file("{" + entry(dtype="F32") + "}", bytes(4)), "needs 16"),
    "past_data_end": (raw_file("{" + entry(offsets="[0,4]") + "}", bytes(3)), "extend past the end of the data"),
    "reversed_offsets": (raw_file("{" + entry(shape="[0]", offsets="[4,0]") + "}", bytes(4)), "ends before it begins"),
    "hole": (raw_file("{" + entry(offsets="[2,6]") + "}", bytes(6)), "belong to no tensor"),
    "trailing_data": (raw_file("{" + entry() + "}", bytes(9)), "(trailing data)"),
    "overlap": (raw_file("{" + entry() + "," + entry("b", offsets="[2,6]") + "}", bytes(6)), "overlaps tensor 'a'"),
    "metadata_not_string": (raw_file('{"__metadata__":{"k":1}}'), "is a number, not a string"),
    "shape_overflow": (raw_file("{" + entry(shape="[4294967296,4294967296,4294967296]") + "}", bytes(4)),
                       "overflows 64 bits"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_files_rejected_like_the_reference(pagoda_bin, tmp_path, case):
    data, reason = MALFORMED[case]
    with pytest.raises(Exception):
        safetensors.deserialize(data)
    path = tmp_path / f"{case}.safetensors"
    path.write_bytes(data)
    err = pagoda_error(pagoda_bin, path)
    assert str(path) in err
    assert reason in err


# Files the reference accepts that pagoda refuses on purpose: ambiguous or unrepresentable.
STRICTER = {
    "duplicate_name": (raw_file("{" + entry() + "," + entry() + "}", bytes(4)), "duplicate tensor name 'a'"),
    "unknown_field": (raw_file('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":0}}', b"x"),
                      "unknown field 'extra'"),
    "rank_9": (raw_file("{" + entry(shape="[1,1,1,1,1,1,1,1,1]", offsets="[0,1]") + "}", b"x"),
               "more than 8 dimensions"),
    "leading_space": (raw_file(" {}"), "header does not start with '{'"),
}


@pytest.mark.parametrize("case", sorted(STRICTER))
def test_where_pagoda_is_stricter_than_the_reference(pagoda_bin, tmp_path, case):
    data, reason = STRICTER[case]
    safetensors.deserialize(data)  # accepted by the reference
    path = tmp_path / f"{case}.safetensors"
    path.write_bytes(data)
    assert reason in pagoda_error(pagoda_bin, path)


def test_valid_layouts_the_reference_accepts(pagoda_bin, tmp_path):
    """Hand-made headers: odd length (unaligned data), entries out of data order, fields in any order,
    several zero-size tensors on one offset, trailing space padding."""
    header = ('{"z":{"shape":[2],"data_offsets":[3,7],"dtype":"I16"},"e1":{"dtype":"F32","shape":[0,5],'
              '"data_offsets":[3,3]},"a":{"data_offsets":[0,3],"dtype":"U8","shape":[3]},'
              '"e2":{"dtype":"F64","shape":[0],"data_offsets":[3,3]}}   ')
    data = bytes(range(10, 17))
    path = tmp_path / "odd.safetensors"
    path.write_bytes(raw_file(header, data))
    assert len(safetensors.deserialize(path.read_bytes())) == 4
    listing = pagoda_tensors(pagoda_bin, path)
    check_against_reference(listing, [path])


def test_text_listing(pagoda_bin, tmp_path):
    path = tmp_path / "t.safetensors"
    save_file({"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, str(path))
    proc = subprocess.run([str(pagoda_bin), "tensors", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "1 tensor" in proc.stdout
    line = next(l for l in proc.stdout.splitlines() if l.strip().startswith("w "))
    assert "f32" in line and "[2, 3]" in line and "nbytes=24" in line
    assert f"xxh64={xxhash.xxh64(np.arange(6, dtype=np.float32).tobytes()).hexdigest()}" in line
