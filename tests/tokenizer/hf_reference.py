"""Reference tokenizers for the tests: HF `tokenizers`, and transformers' conversion of GGUF files.

transformers (5.x) reads GGUF metadata in a module that imports torch at the top, although
reading a tokenizer never calls it. Without torch installed, a stand-in module is registered so
that import succeeds; every call that would need torch still fails loudly.
"""
import importlib.util
import json
import sys
import types
from pathlib import Path


def _ensure_torch_importable():
    if "torch" in sys.modules or importlib.util.find_spec("torch") is not None:
        return

    class _Absent:
        def __init__(self, name):
            self._name = name

        def __getattr__(self, name):
            return _Absent(f"{self._name}.{name}")

        def __call__(self, *args, **kwargs):
            raise RuntimeError(f"torch is not installed ({self._name} was called)")

        def __getitem__(self, key):
            return self

        def __or__(self, other):
            return self

        __ror__ = __or__

    stub = types.ModuleType("torch")
    stub.__getattr__ = lambda name: _Absent(f"torch.{name}")
    sys.modules["torch"] = stub


def gguf_architecture(path: Path) -> str:
    import gguf

    reader = gguf.GGUFReader(str(path))
    field = reader.fields["general.architecture"]
    return bytes(field.parts[field.data[0]]).decode()


def load_gguf_tokenizer(path: Path):
    """What `AutoTokenizer.from_pretrained(folder, gguf_file=name)` returns, without torch.

    AutoTokenizer reads the model config from the file only to pick the tokenizer class for the
    architecture (`TOKENIZER_MAPPING_NAMES`, falling back to `TokenizersBackend`); we pick it the
    same way from `general.architecture` and let that class convert the file.
    """
    import transformers  # noqa: F401  (must be imported before the stand-in is registered)
    from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING_NAMES, tokenizer_class_from_name
    from transformers.tokenization_utils_tokenizers import TokenizersBackend

    _ensure_torch_importable()
    arch = gguf_architecture(path)
    name = TOKENIZER_MAPPING_NAMES.get(arch)
    cls = tokenizer_class_from_name(name) if name else TokenizersBackend
    if cls is None:
        cls = TokenizersBackend
    return cls.from_pretrained(str(path.parent), gguf_file=path.name)


class HFReference:
    """encode/decode through a transformers tokenizer."""

    def __init__(self, tok):
        self.tok = tok

    def encode(self, text: str, add_special_tokens: bool = True):
        return self.tok.encode(text, add_special_tokens=add_special_tokens)

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return self.tok.decode(ids, skip_special_tokens=skip_special_tokens)

    def vocab_size(self) -> int:
        return len(self.tok)


class TokenizersReference:
    """encode/decode through HF tokenizers' Tokenizer."""

    def __init__(self, tok):
        self.tok = tok

    def encode(self, text: str, add_special_tokens: bool = True):
        return self.tok.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return self.tok.decode(ids, skip_special_tokens=skip_special_tokens)

    def vocab_size(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)


# ------------------------------------------------------------------------------------------------
# Tokenizers built in the test from the corpus.

LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _extra_added_tokens():
    from tokenizers import AddedToken

    return [
        AddedToken("<think>", lstrip=True, rstrip=True, normalized=False),
        AddedToken("</think>", normalized=False),
        AddedToken("hello world", single_word=True, normalized=True),
        AddedToken("ABC", normalized=True),
        AddedToken("♥♥", normalized=False, special=False),
    ]


def _with_model_flags(tok, **flags):
    from tokenizers import Tokenizer

    j = json.loads(tok.to_str())
    j["model"].update(flags)
    return Tokenizer.from_str(json.dumps(j))


def build_byte_level(texts, split_regex, normalizer, specials, bos=None, eos=None, ignore_merges=False,
                     vocab_size=4000):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(split_regex), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    single = " ".join(x for x in [bos and f"{bos}:0", "$A:0", eos and f"{eos}:0"] if x)
    st = [(t, tok.token_to_id(t)) for t in (bos, eos) if t]
    tok.post_processor = processors.TemplateProcessing(single=single, pair=single + " $B:1", special_tokens=st)
    tok.add_tokens(_extra_added_tokens())
    if ignore_merges:
        tok = _with_model_flags(tok, ignore_merges=True)
    return tok


def build_gpt2_digits(texts):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=3000, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    eot = tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.TemplateProcessing(single="$A:0 <|endoftext|>:0", pair="$A:0 $B:1",
                                                       special_tokens=[("<|endoftext|>", eot)])
    tok.add_tokens(_extra_added_tokens())
    return tok


def build_sentencepiece(texts, variant: str):
    """SentencePiece-style BPE with byte fallback: a small alphabet so that many characters fall
    back to <0xXX> byte tokens."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    specials = ["<unk>", "<s>", "</s>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    if variant == "llama":
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
    else:
        tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
        tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(replacement="▁",
                                                                                   prepend_scheme="always")])
    trainer = trainers.BpeTrainer(vocab_size=2500, special_tokens=specials, limit_alphabet=150, show_progress=False)
    tok.train_from_iterator(texts, trainer)
    j = json.loads(tok.to_str())
    vocab = j["model"]["vocab"]
    next_id = max(vocab.values()) + 1
    for b in range(256):
        name = f"<0x{b:02X}>"
        if name not in vocab:
            vocab[name] = next_id
            next_id += 1
    tok = Tokenizer.from_str(json.dumps(j))
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s>:0 $A:0", pair="<s>:0 $A:0 $B:1",
                                                       special_tokens=[("<s>", bos)])
    tok.add_tokens(_extra_added_tokens())
    return tok


# ------------------------------------------------------------------------------------------------
# Small GGUF files holding a tokenizer (no tensors), written with the gguf package from a
# tokenizer trained above, so transformers' GGUF conversion can be compared on more than the two
# real models: score-ordered SentencePiece merges, the "qwen2" / "llama-bpe" split names, and
# tokens stored as plain UTF-8 instead of the byte alphabet.

def _bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def write_gguf_tokenizer(tok, path: Path, *, model: str, arch: str, pre=None, bos=None, eos=None, unk=None,
                         add_bos=None, plain_utf8_tokens=False):
    import gguf

    j = json.loads(tok.to_str())
    by_id = {i: t for t, i in j["model"]["vocab"].items()}
    types = {}
    for a in j["added_tokens"]:
        by_id[a["id"]] = a["content"]
        types[a["id"]] = 3 if a["special"] else 4
    n = max(by_id) + 1
    assert sorted(by_id) == list(range(n)), "ids must be contiguous"
    tokens = [by_id[i] for i in range(n)]
    if plain_utf8_tokens:
        # Write tokens whose text is far from the byte alphabet (e.g. CJK) as plain UTF-8, as some
        # converters do; readers must respell them.
        decode = {c: b for b, c in _bytes_to_unicode().items()}
        for i, t in enumerate(tokens):
            if i in types or not all(c in decode for c in t):
                continue
            try:
                text = bytes(decode[c] for c in t).decode("utf-8")
            except UnicodeDecodeError:
                continue
            if text and all(ord(c) >= 0x250 for c in text):
                tokens[i] = text
    w = gguf.GGUFWriter(str(path), arch)
    w.add_tokenizer_model(model)
    if pre is not None:
        w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    ttypes = []
    for i, t in enumerate(tokens):
        if i in types:
            ttypes.append(types[i])
        elif model == "llama" and len(t) == 6 and t.startswith("<0x") and t.endswith(">"):
            ttypes.append(6)
        elif t == unk:
            ttypes.append(2)
        else:
            ttypes.append(1)
    w.add_token_types(ttypes)
    if model == "gpt2":
        merges = [m if isinstance(m, str) else " ".join(m) for m in j["model"]["merges"]]
        w.add_token_merges(merges)
    else:
        # SentencePiece scores: later pieces score lower; control and byte pieces 0.
        w.add_token_scores([0.0 if ttypes[i] in (3, 6) else -float(i) for i in range(n)])
    for name, setter in ((bos, w.add_bos_token_id), (eos, w.add_eos_token_id), (unk, w.add_unk_token_id)):
        if name is not None:
            setter(tokens.index(name))
    if add_bos is not None:
        w.add_add_bos_token(add_bos)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
