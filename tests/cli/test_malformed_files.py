"""A corpus of malformed model files, each of which `pagoda info` must reject with a one-line
message naming the file, a non-zero exit status, and no crash or sanitizer report.

The files are made here, from a valid file written by the reference `gguf` package or by hand, so
the corpus needs no fixtures in git. Run against the ASan+UBSan build (scripts/test.sh does)."""
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from pagoda_testing import run_pagoda

GGUF_MAGIC = b"GGUF"


def kv_string(key: str, value: bytes) -> bytes:
    return struct.pack("<Q", len(key.encode())) + key.encode() + struct.pack("<I", 8) + struct.pack("<Q", len(value)) + value


def gguf_header(n_tensors: int, n_kv: int, version: int = 3) -> bytes:
    return GGUF_MAGIC + struct.pack("<IQQ", version, n_tensors, n_kv)


def tensor_info(name: bytes, ne, type_id: int, offset: int) -> bytes:
    return struct.pack("<Q", len(name)) + name + struct.pack("<I", len(ne)) + b"".join(
        struct.pack("<Q", d) for d in ne) + struct.pack("<IQ", type_id, offset)


def pad(b: bytes, alignment: int = 32) -> bytes:
    return b + b"\0" * (-len(b) % alignment)


def arch_kv() -> bytes:
    return kv_string("general.architecture", b"llama")


def gguf_with_tensors(infos, data_size: int = 256) -> bytes:
    body = gguf_header(len(infos), 1) + arch_kv() + b"".join(infos)
    return pad(body) + b"\x11" * data_size


def valid_gguf(path: Path) -> bytes:
    import gguf
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(2)
    w.add_context_length(128)
    w.add_embedding_length(64)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(32)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"t{i}" for i in range(32)])
    w.add_tensor("token_embd.weight", np.ones((32, 64), dtype=np.float32))
    w.add_tensor("output_norm.weight", np.ones((64,), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


def safetensors_bytes(header, data: bytes = b"", raw_header: bytes = None) -> bytes:
    h = raw_header if raw_header is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def malformed_gguf(tmp: Path):
    good = valid_gguf(tmp / "good.gguf")
    cases = {
        "empty.gguf": b"",
        "short_magic.gguf": b"GG",
        "bad_magic.gguf": b"GGML" + good[4:],
        "version1.gguf": GGUF_MAGIC + struct.pack("<I", 1) + good[8:],
        "version99.gguf": GGUF_MAGIC + struct.pack("<I", 99) + good[8:],
        "big_endian.gguf": GGUF_MAGIC + struct.pack(">I", 3) + good[8:],
        "huge_tensor_count.gguf": gguf_header(1 << 62, 0),
        "huge_kv_count.gguf": gguf_header(0, 1 << 62),
        "kv_count_past_end.gguf": gguf_header(0, 5) + arch_kv(),
        "huge_key_length.gguf": gguf_header(0, 1) + struct.pack("<Q", 1 << 60),
        "non_utf8_key.gguf": gguf_header(0, 1) + struct.pack("<Q", 2) + b"\xff\xfe" + struct.pack("<II", 4, 1),
        "unknown_value_type.gguf": gguf_header(0, 1) + struct.pack("<Q", 1) + b"k" + struct.pack("<I", 77),
        "bad_bool.gguf": gguf_header(0, 1) + struct.pack("<Q", 1) + b"k" + struct.pack("<IB", 7, 9),
        "huge_array.gguf": gguf_header(0, 1) + struct.pack("<Q", 1) + b"k" + struct.pack("<IIQ", 9, 4, 1 << 40),
        "huge_string_value.gguf": gguf_header(0, 1) + struct.pack("<Q", 1) + b"k" + struct.pack("<IQ", 8, 1 << 50),
        "deep_nested_array.gguf": gguf_header(0, 1) + struct.pack("<Q", 1) + b"k" + struct.pack("<I", 9)
        + struct.pack("<IQ", 9, 1) * 40 + struct.pack("<IQ", 0, 0),
        "duplicate_key.gguf": gguf_header(0, 2) + arch_kv() + arch_kv(),
        "alignment_not_pow2.gguf": gguf_header(0, 1) + struct.pack("<Q", 17) + b"general.alignment" + struct.pack("<II", 4, 48),
        "alignment_zero.gguf": gguf_header(0, 1) + struct.pack("<Q", 17) + b"general.alignment" + struct.pack("<II", 4, 0),
        "alignment_wrong_type.gguf": gguf_header(0, 1) + kv_string("general.alignment", b"32"),
        "tensor_zero_dims.gguf": gguf_with_tensors([tensor_info(b"t", [], 0, 0)]),
        "tensor_five_dims.gguf": gguf_with_tensors([tensor_info(b"t", [1, 1, 1, 1, 1], 0, 0)]),
        "tensor_unknown_type.gguf": gguf_with_tensors([tensor_info(b"t", [4], 4, 0)]),
        "tensor_type_out_of_range.gguf": gguf_with_tensors([tensor_info(b"t", [4], 0xFFFFFFFF, 0)]),
        "tensor_shape_overflow.gguf": gguf_with_tensors([tensor_info(b"t", [1 << 40, 1 << 40], 0, 0)]),
        "tensor_bytes_overflow.gguf": gguf_with_tensors([tensor_info(b"t", [1 << 62], 0, 0)]),
        "tensor_past_end.gguf": gguf_with_tensors([tensor_info(b"t", [1024], 0, 0)]),
        "tensor_offset_past_end.gguf": gguf_with_tensors([tensor_info(b"t", [4], 0, 1 << 62)]),
        "tensor_offset_wraps.gguf": gguf_with_tensors([tensor_info(b"t", [4], 0, (1 << 64) - 32)]),
        "tensor_misaligned.gguf": gguf_with_tensors([tensor_info(b"t", [4], 0, 8)]),
        "tensors_overlap.gguf": gguf_with_tensors([tensor_info(b"a", [16], 0, 0), tensor_info(b"b", [16], 0, 32)]),
        "tensor_duplicate_name.gguf": gguf_with_tensors([tensor_info(b"a", [4], 0, 0), tensor_info(b"a", [4], 0, 32)]),
        "tensor_non_utf8_name.gguf": gguf_with_tensors([tensor_info(b"\xc3\x28", [4], 0, 0)]),
        "tensor_partial_block.gguf": gguf_with_tensors([tensor_info(b"q", [40], 2, 0)]),
        "tensor_dim_negative.gguf": gguf_with_tensors([tensor_info(b"t", [1 << 63], 0, 0)]),
        "data_section_missing.gguf": gguf_header(1, 1) + arch_kv() + tensor_info(b"t", [4], 0, 0),
    }
    # The valid file cut at several points: inside the header, metadata, tensor infos and data.
    for cut in (10, 30, 100, 400, len(good) // 2, len(good) - 1):
        cases[f"truncated_at_{cut}.gguf"] = good[:cut]
    return cases


def malformed_safetensors():
    f32 = lambda shape, begin, end: {"dtype": "F32", "shape": shape, "data_offsets": [begin, end]}
    cases = {
        "empty.safetensors": b"",
        "short_length.safetensors": b"\x08\x00\x00",
        "header_too_large.safetensors": struct.pack("<Q", 1 << 40) + b"{}",
        "header_past_end.safetensors": struct.pack("<Q", 1000) + b"{}",
        "header_not_json.safetensors": safetensors_bytes(None, raw_header=b"{not json"),
        "header_not_object.safetensors": safetensors_bytes([1, 2, 3]),
        "header_invalid_utf8.safetensors": safetensors_bytes(None, raw_header=b'{"\xff\xfe": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', data=b"\0" * 4),
        "unknown_dtype.safetensors": safetensors_bytes({"t": {"dtype": "F7", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4),
        "negative_shape.safetensors": safetensors_bytes({"t": f32([-1], 0, 4)}, b"\0" * 4),
        "shape_overflow.safetensors": safetensors_bytes({"t": f32([1 << 40, 1 << 40], 0, 4)}, b"\0" * 4),
        "size_mismatch.safetensors": safetensors_bytes({"t": f32([2], 0, 4)}, b"\0" * 4),
        "offsets_past_end.safetensors": safetensors_bytes({"t": f32([4], 0, 16)}, b"\0" * 4),
        "offsets_reversed.safetensors": safetensors_bytes({"t": f32([1], 8, 4)}, b"\0" * 8),
        "overlapping.safetensors": safetensors_bytes({"a": f32([2], 0, 8), "b": f32([2], 4, 12)}, b"\0" * 12),
        "hole.safetensors": safetensors_bytes({"a": f32([1], 0, 4), "b": f32([1], 8, 12)}, b"\0" * 12),
        "missing_field.safetensors": safetensors_bytes({"t": {"dtype": "F32", "shape": [1]}}, b"\0" * 4),
        "wrong_types.safetensors": safetensors_bytes({"t": {"dtype": 5, "shape": "x", "data_offsets": [0, 4]}}, b"\0" * 4),
        "deep_nesting.safetensors": safetensors_bytes(None, raw_header=b"[" * 100000 + b"]" * 100000),
        "duplicate_keys.safetensors": safetensors_bytes(None, raw_header=b'{"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', data=b"\0" * 4),
    }
    return cases


def write_cases(tmp: Path, cases) -> list:
    paths = []
    for name, data in cases.items():
        p = tmp / name
        p.write_bytes(data)
        paths.append(p)
    return paths


def hf_folder(tmp: Path, name: str, config, files=None) -> Path:
    d = tmp / name
    d.mkdir()
    (d / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    for fname, data in (files or {}).items():
        (d / fname).write_bytes(data)
    return d


def malformed_folders(tmp: Path):
    good_weights = safetensors_bytes({"model.embed_tokens.weight": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}}, b"\0" * 64)
    llama = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
             "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 32,
             "max_position_embeddings": 128, "rms_norm_eps": 1e-5}
    return [
        hf_folder(tmp, "config_not_json", "{", {"model.safetensors": good_weights}),
        hf_folder(tmp, "config_unknown_arch", {**llama, "architectures": ["FooForCausalLM"], "model_type": "foo"},
                  {"model.safetensors": good_weights}),
        hf_folder(tmp, "config_negative_hidden", {**llama, "hidden_size": -64}, {"model.safetensors": good_weights}),
        hf_folder(tmp, "config_heads_mismatch", {**llama, "num_key_value_heads": 3}, {"model.safetensors": good_weights}),
        hf_folder(tmp, "index_escapes_folder", llama, {"model.safetensors.index.json": json.dumps(
            {"weight_map": {"model.embed_tokens.weight": "../outside.safetensors"}}).encode()}),
        hf_folder(tmp, "index_missing_shard", llama, {"model.safetensors.index.json": json.dumps(
            {"weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors"}}).encode()}),
        hf_folder(tmp, "no_weights", llama),
    ]


def check_rejected(pagoda_bin, path: Path):
    r = run_pagoda(pagoda_bin, "info", str(path))
    assert r.returncode > 0, f"{path.name}: exit status {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, f"{path.name}: {r.stderr}"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, f"{path.name}: expected one line, got: {r.stderr!r}"
    assert lines[0].startswith("error: "), lines[0]
    assert path.name in lines[0], f"{path.name}: message does not name the file: {lines[0]}"
    return lines[0]


def test_corpus_is_large_enough(tmp_path):
    n = len(malformed_gguf(tmp_path)) + len(malformed_safetensors()) + len(malformed_folders(tmp_path))
    assert n >= 30, n


def test_malformed_gguf_rejected(pagoda_bin, tmp_path):
    messages = {}
    for path in write_cases(tmp_path, malformed_gguf(tmp_path)):
        messages[path.name] = check_rejected(pagoda_bin, path)
    # Spot-check that the reason is specific, not a generic failure.
    assert "bad magic" in messages["bad_magic.gguf"]
    assert "overlap" in messages["tensors_overlap.gguf"]
    assert "past the end" in messages["tensor_past_end.gguf"]
    assert "alignment" in messages["tensor_misaligned.gguf"]
    assert "UTF-8" in messages["non_utf8_key.gguf"]


def test_malformed_safetensors_rejected(pagoda_bin, tmp_path):
    for path in write_cases(tmp_path, malformed_safetensors()):
        check_rejected(pagoda_bin, path)


def test_malformed_hf_folders_rejected(pagoda_bin, tmp_path):
    for folder in malformed_folders(tmp_path):
        msg = check_rejected(pagoda_bin, folder)
        if folder.name == "config_unknown_arch":
            assert "foo" in msg.lower() and "llama" in msg and "gemma2" in msg, msg


def test_valid_gguf_still_accepted(pagoda_bin, tmp_path):
    path = tmp_path / "good.gguf"
    valid_gguf(path)
    r = run_pagoda(pagoda_bin, "info", str(path))
    assert r.returncode == 0, r.stderr
    assert "llama" in r.stdout
