"""Tokenizers: ``AutoTokenizer.from_pretrained(...)`` and the :class:`Tokenizer` it returns.

The actual tokenization is done by the Rust `tokenizers` library; this package reads a checkpoint's
tokenizer files, applies the settings from ``tokenizer_config.json`` and gives the familiar call
API (``tok(texts, padding=True, return_tensors="pt")``, ``decode``, ``apply_chat_template``,
``save_pretrained``).

Files read, in this order of preference:

* ``tokenizer.json`` (used as is: its normalizer, pre-tokenizer, model, post-processor, decoder);
* ``vocab.txt`` -> a BERT WordPiece tokenizer (``do_lower_case``, ``strip_accents``,
  ``tokenize_chinese_chars`` from ``tokenizer_config.json``);
* ``vocab.json`` + ``merges.txt`` -> a GPT-2 byte-level BPE tokenizer (``add_prefix_space``,
  ``add_bos_token``/``add_eos_token`` from the config; RoBERTa/BART classes get ``<s> ... </s>``);
* a SentencePiece model (``spiece.model``: T5, Pegasus; ``sentencepiece.bpe.model``: mBART,
  mBART-50; ``source.spm`` + ``target.spm`` + ``vocab.json``: Marian) -> a Unigram tokenizer laid
  out as the reference's class does (:mod:`.seq2seq_conversion`, read by our own
  :mod:`.sentencepiece_model`: the `sentencepiece` package is not needed);

plus ``tokenizer_config.json``, ``special_tokens_map.json``, ``added_tokens.json`` (legacy),
``chat_template.jinja`` and ``chat_templates/*.jinja``.

The package, one concern a module: ``tokenizer`` (the :class:`Tokenizer` class, assembled from
the mixins of ``special_tokens``, ``vocabulary``, ``encoding``, ``padding``, ``decoding``, ``chat``
and ``saving``), ``auto_tokenizer``, ``batch_encoding``, ``loading`` and ``conversion`` (reading
the files), ``inputs`` (argument checks) and ``constants``.

Example::

    >>> from pretrained.tokenization import AutoTokenizer
    >>> tok = AutoTokenizer.from_pretrained("tests/fixtures/tokenizers/bert_wordpiece")
    >>> batch = tok(["Hello world!", "hi"], padding=True, return_tensors="pt")
    >>> batch["input_ids"].shape
    torch.Size([2, 5])
    >>> tok.decode(batch["input_ids"][0], skip_special_tokens=True)
    'hello world!'
"""

from __future__ import annotations

import logging
from pathlib import Path  # noqa: F401  (the docstring examples run with this module's names)

from tokenizers import AddedToken  # noqa: F401  (re-exported: add_tokens / add_special_tokens take it)

from ..errors import (  # noqa: F401  (re-exported, as the single-module version did)
    InvalidInputError,
    MissingDependencyError,
    RemoteCodeError,
    TemplateError,
    TokenizerError,
    TokenizerLoadError,
    TokenizerNotFoundError,
)
from . import (
    auto_tokenizer,
    batch_encoding,
    chat,
    constants,
    conversion,
    ctc,
    decoding,
    encoding,
    inputs,
    loading,
    padding,
    saving,
    sentencepiece_model,
    seq2seq,
    seq2seq_conversion,
    special_tokens,
    tokenizer,
    vocabulary,
    whisper,
)
from .auto_tokenizer import AutoTokenizer
from .batch_encoding import (  # noqa: F401
    BatchEncoding,
    CharSpan,
    TokenSpan,
    _as_tensor,
    _check_return_tensors,
    _rebuild_batch_encoding,
    _row_lengths,
)
from .constants import (  # noqa: F401
    ADDED_TOKENS_FILE,
    CHAT_TEMPLATE_DIR,
    CHAT_TEMPLATE_FILE,
    CONFIG_FILE,
    SPECIAL_TOKEN_NAMES,
    SPECIAL_TOKENS_MAP_FILE,
    TOKENIZER_FILE,
    VERY_LARGE_INTEGER,
    _BERT_CLASSES,
    _BERT_SPECIALS,
    _CONFIG_DROP_ON_SAVE,
    _DEFAULT_SPECIALS,
    _GPT2_CLASSES,
    _GPT2_SPECIALS,
    _INPUT_NAMES_BY_CLASS,
    _LARGE_INTEGER,
    _LEFT_PADDING_CLASSES,
    _PADDING_VALUES,
    _ROBERTA_CLASSES,
    _ROBERTA_SPECIALS,
    _TRUNCATION_VALUES,
    _VALID_TENSORS,
    _base_class_name,
)
from .conversion import (  # noqa: F401
    _add_conversion_post_processor,
    _apply_class_settings,
    _bpe_from_vocab_merges,
    _wordpiece_from_vocab,
)
from .decoding import clean_up_tokenization  # noqa: F401
from .inputs import (  # noqa: F401
    _as_id,
    _check_text,
    _check_words,
    _error_detail,
    _find_surrogate,
    _is_fatal,
    _tensor_kind,
    _to_python_ids,
)
from .loading import _load_into, _load_tokenizer_json, _read_json, _read_text  # noqa: F401
from .saving import _derived_config  # noqa: F401
from .special_tokens import (  # noqa: F401
    _special_id_property,
    _special_token_property,
    _to_added_token,
    _token_state,
)
from .ctc import Wav2Vec2CTCTokenizer, Wav2Vec2CTCTokenizerOutput
from .seq2seq import MarianTokenizer, MBart50Tokenizer, MBartTokenizer, PegasusTokenizer, T5Tokenizer
from .tokenizer import PreTrainedTokenizerFast, Tokenizer
from .whisper import WhisperTokenizer

__all__ = [
    "AutoTokenizer",
    "BatchEncoding",
    "MarianTokenizer",
    "MBartTokenizer",
    "MBart50Tokenizer",
    "PegasusTokenizer",
    "T5Tokenizer",
    "Wav2Vec2CTCTokenizer",
    "Wav2Vec2CTCTokenizerOutput",
    "WhisperTokenizer",
    "CharSpan",
    "PreTrainedTokenizerFast",
    "Tokenizer",
    "SPECIAL_TOKEN_NAMES",
]

logger = logging.getLogger(__name__)

_SUBMODULES = (
    constants,
    inputs,
    batch_encoding,
    special_tokens,
    vocabulary,
    encoding,
    padding,
    decoding,
    chat,
    saving,
    conversion,
    loading,
    tokenizer,
    auto_tokenizer,
    sentencepiece_model,
    seq2seq_conversion,
    seq2seq,
    whisper,
    ctc,
)


def _docstring_examples() -> dict[str, str]:
    """The docstrings with examples of the submodules' functions, classes and methods.

    ``doctest.testmod`` only collects the objects defined in the module it is given; listed in
    ``__test__``, they keep ``doctest.testmod(pretrained.tokenization)`` running every example of
    the package.
    """
    found: dict[str, str] = {}
    for module in _SUBMODULES:
        for name, obj in vars(module).items():
            if getattr(obj, "__module__", None) != module.__name__:
                continue  # imported, not defined here
            members = {name: obj}
            if isinstance(obj, type):
                members.update({f"{name}.{key}": value for key, value in vars(obj).items()})
            for qualname, member in members.items():
                doc = getattr(getattr(member, "__func__", member), "__doc__", None)  # classmethods too
                if isinstance(doc, str) and ">>>" in doc:
                    found[f"{module.__name__}.{qualname}"] = doc
    return found


__test__ = _docstring_examples()
