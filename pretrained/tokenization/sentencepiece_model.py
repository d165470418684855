"""Reading a SentencePiece model file (``spiece.model``, ``sentencepiece.bpe.model``, ``source.spm``...)
without the `sentencepiece` or `protobuf` packages.

A ``.model`` file is one serialized ``ModelProto`` message (sentencepiece_model.proto). Only a few
of its fields decide how text is tokenized, and protobuf's wire format is simple enough to read
them directly: the pieces (string, score, type), the trainer spec's model type and special ids,
and the normalizer spec (precompiled charsmap, dummy prefix, whitespace handling). Reading it
ourselves keeps `sentencepiece` out of the dependencies: the tokenization itself is done by the
`tokenizers` library from what is read here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import TokenizerLoadError

# SentencePiece.Type
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
# TrainerSpec.ModelType
UNIGRAM, BPE, WORD, CHAR = 1, 2, 3, 4


@dataclass
class SpmModel:
    """What a SentencePiece model file says about tokenization.

    Example::

        >>> from pretrained.tokenization.sentencepiece_model import UNIGRAM, read_spm_model
        >>> m = read_spm_model("tests/fixtures/tokenizers/t5_spm/spiece.model")
        >>> m.pieces[:3], m.model_type == UNIGRAM, (m.pad_id, m.eos_id, m.unk_id, m.bos_id)
        ([('<pad>', 0.0, 3), ('</s>', 0.0, 3), ('<unk>', 0.0, 2)], True, (0, 1, 2, -1))
    """

    pieces: list[tuple[str, float, int]] = field(default_factory=list)  # (piece, score, type)
    model_type: int = UNIGRAM
    byte_fallback: bool = False
    unk_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    pad_id: int = -1
    unk_piece: str = "<unk>"
    bos_piece: str = "<s>"
    eos_piece: str = "</s>"
    pad_piece: str = "<pad>"
    precompiled_charsmap: bytes = b""
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True

    def vocab(self) -> list[tuple[str, float]]:
        """(piece, score) in id order: a `tokenizers` Unigram vocabulary."""
        return [(p, s) for p, s, _ in self.pieces]


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise ValueError("varint too long")


def _fields(data: bytes):
    """(field number, wire type, value) of one message; value is an int or bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:  # groups (3, 4) are not used by sentencepiece_model.proto
            raise ValueError(f"unsupported wire type {wire}")
        if pos > len(data):
            raise ValueError("truncated field")
        yield number, wire, value


def _int32(value: int) -> int:
    # negative int32 values (bos_id=-1) are written as 64-bit two's complement varints
    return value - (1 << 64) if value >= 1 << 63 else value


def _text(value: bytes) -> str:
    return value.decode("utf-8")


def parse_spm_model(data: bytes) -> SpmModel:
    """Parse the bytes of a ``.model`` file (raises ``ValueError`` on malformed data)."""
    model = SpmModel()
    for number, wire, value in _fields(data):
        if number == 1 and wire == 2:  # SentencePiece pieces
            piece, score, kind = "", 0.0, NORMAL
            for n, w, v in _fields(value):
                if n == 1 and w == 2:
                    piece = _text(v)
                elif n == 2 and w == 5:
                    score = struct.unpack("<f", v)[0]
                elif n == 3 and w == 0:
                    kind = v
            model.pieces.append((piece, score, kind))
        elif number == 2 and wire == 2:  # TrainerSpec
            for n, w, v in _fields(value):
                if w == 0:
                    ints = {3: "model_type", 40: "unk_id", 41: "bos_id", 42: "eos_id", 43: "pad_id"}
                    if n in ints:
                        setattr(model, ints[n], _int32(v))
                    elif n == 35:
                        model.byte_fallback = bool(v)
                elif w == 2 and n in (45, 46, 47, 48):
                    name = {45: "unk_piece", 46: "bos_piece", 47: "eos_piece", 48: "pad_piece"}[n]
                    setattr(model, name, _text(v))
        elif number == 3 and wire == 2:  # NormalizerSpec
            for n, w, v in _fields(value):
                if n == 2 and w == 2:
                    model.precompiled_charsmap = bytes(v)
                elif n == 3 and w == 0:
                    model.add_dummy_prefix = bool(v)
                elif n == 4 and w == 0:
                    model.remove_extra_whitespaces = bool(v)
    if not model.pieces:
        raise ValueError("no pieces")
    return model


def read_spm_model(path: str | Path) -> SpmModel:
    """Read a SentencePiece ``.model`` file; a :class:`TokenizerLoadError` names a bad one."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise TokenizerLoadError(f"{path}: cannot read the SentencePiece model: {e}") from None
    try:
        return parse_spm_model(data)
    except (ValueError, UnicodeDecodeError, struct.error) as e:
        raise TokenizerLoadError(
            f"{path}: not a valid SentencePiece model ({e}); re-download it or save the tokenizer again"
        ) from None
