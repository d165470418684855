"""Whisper's tokenizer: GPT-2's byte-level BPE plus the tokens that tell the decoder what to do.

Whisper's decoder starts from a prefix: ``<|startoftranscript|>``, a language (``<|fr|>``), a task
(``<|transcribe|>`` / ``<|translate|>``) and ``<|notimestamps|>`` unless timestamps are predicted.
Labels for fine-tuning are that prefix, the text and ``<|endoftext|>``, so encoding text adds them
(set them with ``language=``, ``task=``, ``predict_timestamps=`` at load or
:meth:`WhisperTokenizer.set_prefix_tokens`).

After the special tokens come 1501 timestamp tokens, ``<|0.00|>`` ... ``<|30.00|>``, one per 20 ms.
They are ordinary added tokens (not "special"), so plain decoding removes them from the text
itself; ``decode_with_timestamps=True`` keeps them, and ``output_offsets=True`` turns timestamp
pairs into ``{"text", "timestamp": (start, end)}`` segments. Timestamps that start over from 0
(a new 30-second window in long-form output) are shifted to continue the previous window's.

The language table is shared with generation through :mod:`pretrained.whisper_languages`.

Example::

    >>> from pretrained.tokenization import AutoTokenizer
    >>> tok = AutoTokenizer.from_pretrained("tests/fixtures/tokenizers/whisper-base", language="fr", task="transcribe")
    >>> tok.convert_ids_to_tokens(tok("Bonjour").input_ids)
    ['<|startoftranscript|>', '<|fr|>', '<|transcribe|>', '<|notimestamps|>', 'Bon', 'jour', '<|endoftext|>']
    >>> tok.decode([50364, 42145, 8696, 50414, 50257], decode_with_timestamps=True)
    '<|0.00|>Bonjour<|1.00|><|endoftext|>'
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from tokenizers import processors

from ..errors import InvalidInputError, UnknownLanguageCodeError, UnsupportedOptionError
from ..whisper_languages import LANGUAGES, TASKS, TO_LANGUAGE_CODE, language_code, language_index
from .constants import _TOKENIZER_CLASSES
from .inputs import _to_python_ids
from .tokenizer import Tokenizer

_TIMESTAMP = re.compile(r"<\|(\d+\.\d+)\|>")
#: Letters NFKD does not split into a base letter and a mark, spelled out when removing diacritics.
_ADDITIONAL_DIACRITICS = {
    "œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "ß": "ss", "ẞ": "SS", "đ": "d",
    "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "th", "ł": "l", "Ł": "L",
}  # fmt: skip


class WhisperTokenizer(Tokenizer):
    """Whisper's tokenizer (the reference's ``WhisperTokenizer`` / ``WhisperTokenizerFast``).

    ``language`` (code or name, e.g. ``"fr"`` or ``"french"``), ``task`` (``"transcribe"`` /
    ``"translate"``) and ``predict_timestamps`` choose the prefix added when encoding.

    Example::

        >>> tok = AutoTokenizer.from_pretrained("tests/fixtures/tokenizers/whisper-base")
        >>> tok.prefix_tokens
        [50258, 50363]
        >>> tok.set_prefix_tokens(language="german", task="translate", predict_timestamps=True)
        >>> tok.convert_ids_to_tokens(tok.prefix_tokens)
        ['<|startoftranscript|>', '<|de|>', '<|translate|>']
    """

    language: str | None
    task: str | None
    predict_timestamps: bool

    def _post_load(self) -> None:
        self.language = None
        self.task = None
        self.predict_timestamps = False
        cfg = self._extra_config
        self.set_prefix_tokens(cfg.get("language"), cfg.get("task"), cfg.get("predict_timestamps"))

    # ---------------------------------------------------------------- the prefix
    def set_prefix_tokens(
        self, language: str | None = None, task: str | None = None, predict_timestamps: bool | None = None
    ) -> None:
        """Change the prefix added when encoding (None keeps the current value), e.g. to switch the
        language of fine-tuning labels. Raises :class:`UnknownLanguageCodeError` for a language
        Whisper (or this vocabulary) does not have, :class:`InvalidInputError` for another task.

        Example::

            >>> tok = AutoTokenizer.from_pretrained("tests/fixtures/tokenizers/whisper-base", language="es")
            >>> tok.set_prefix_tokens(language="french")
            >>> tok.convert_ids_to_tokens(tok("Salut").input_ids)[:4]
            ['<|startoftranscript|>', '<|fr|>', '<|notimestamps|>', 'Sal']
        """
        language = language.lower() if language is not None else self.language
        task = task if task is not None else self.task
        predict = predict_timestamps if predict_timestamps is not None else self.predict_timestamps
        ids = self._prefix(language, task, bool(predict))  # checks before anything changes
        self.language, self.task, self.predict_timestamps = language, task, bool(predict)
        # saved with the tokenizer, as the reference does: a reload encodes the same way
        self._extra_config.update(language=language, task=task, predict_timestamps=bool(predict))
        tokens = self.convert_ids_to_tokens(ids)
        eos, eos_id = self.eos_token, self.eos_token_id
        prefix = " ".join(f"{t}:0" for t in tokens)
        with self._lock:
            self._backend.post_processor = processors.TemplateProcessing(
                single=f"{prefix} $A:0 {eos}:0",
                pair=f"{prefix} $A:0 $B:1 {eos}:1",
                special_tokens=[(eos, eos_id), *zip(tokens, ids)],
            )

    @property
    def prefix_tokens(self) -> list[int]:
        """``<|startoftranscript|>``, then the language, the task and ``<|notimestamps|>`` where set."""
        return self._prefix(self.language, self.task, self.predict_timestamps)

    def _prefix(self, language: str | None, task: str | None, predict_timestamps: bool) -> list[int]:
        ids = [self._id("<|startoftranscript|>")]
        if language is not None:
            ids.append(self.language_id(language))
        if task is not None:
            if task not in TASKS:
                raise InvalidInputError(f"unknown task {task!r}: Whisper's tasks are {', '.join(TASKS)}")
            ids.append(self._id(f"<|{task}|>"))
        if not predict_timestamps:
            ids.append(self._id("<|notimestamps|>"))
        return ids

    def language_id(self, language: str) -> int:
        """The token id of a language given by code or name (``"fr"``, ``"French"``, ``"castilian"``).

        As the reference, the k-th language of Whisper's table is token ``<|startoftranscript|>`` + 1 + k
        (so ``"he"`` is ``<|iw|>`` in English-only vocabularies, which use the older code).

        Example::

            >>> AutoTokenizer.from_pretrained("tests/fixtures/tokenizers/whisper-base").language_id("French")
            50265
        """
        code = language_code(language)
        if code is None:
            names = list(TO_LANGUAGE_CODE.values()) if len(language) <= 3 else list(TO_LANGUAGE_CODE)
            raise UnknownLanguageCodeError(
                f"unknown language {language!r}: pass one of Whisper's codes or names, e.g. {', '.join(names[:10])}, ..."
            )
        idx = self._id("<|startoftranscript|>") + 1 + language_index(code)
        token = self._backend.id_to_token(idx)
        # a vocabulary older than the language (base has no <|yue|>): that id is another token
        if token is None or (token[2:-2] not in LANGUAGES and token != "<|iw|>"):
            raise UnknownLanguageCodeError(
                f"language {language!r} ({code}) is not in this tokenizer's vocabulary (id {idx} is {token!r})"
            )
        return idx

    def _id(self, token: str) -> int:
        idx = self._backend.token_to_id(token)
        if idx is None:
            raise InvalidInputError(f"this vocabulary has no {token} token: is it a Whisper tokenizer?")
        return idx

    @property
    def timestamp_begin(self) -> int:
        """Id of ``<|0.00|>``, the first timestamp token (right after ``<|notimestamps|>``)."""
        return self._id("<|notimestamps|>") + 1

    def timestamp_ids(self, time_precision: float = 0.02) -> list[int | None]:
        """Ids of the timestamp tokens ``<|0.00|>`` ... (1501 of them, ``time_precision`` apart)."""
        return self.convert_tokens_to_ids([f"<|{i * time_precision:.2f}|>" for i in range(1501)])

    def get_decoder_prompt_ids(
        self, task: str | None = None, language: str | None = None, no_timestamps: bool = True
    ) -> list[tuple[int, int]]:
        """``(position, token id)`` for the prefix after ``<|startoftranscript|>`` (generate()'s
        ``forced_decoder_ids``). As the reference, this also sets the prefix used for encoding.

        Example::

            >>> tok = AutoTokenizer.from_pretrained("tests/fixtures/tokenizers/whisper-base")
            >>> tok.get_decoder_prompt_ids(task="transcribe", language="en")
            [(1, 50259), (2, 50359), (3, 50363)]
        """
        self.set_prefix_tokens(task=task, language=language, predict_timestamps=not no_timestamps)
        return [(rank + 1, token) for rank, token in enumerate(self.prefix_tokens[1:])]

    def get_prompt_ids(self, text: str, return_tensors: str | None = "np") -> Any:
        """``<|startofprev|>`` and the text (previous context for generate()'s ``prompt_ids``).
        Raises :class:`InvalidInputError` when the text holds a special or timestamp token.

        Example::

            >>> tok = AutoTokenizer.from_pretrained("tests/fixtures/tokenizers/whisper-base")
            >>> tok.get_prompt_ids("Hello", return_tensors=None)
            [50361, 2425]
        """
        encoding = self("<|startofprev|>", " " + text.strip(), add_special_tokens=False)
        first_special = self._id("<|endoftext|>")
        bad = next((i for i in encoding["input_ids"][1:] if i >= first_special), None)
        if bad is not None:
            raise InvalidInputError(
                f"the prompt text holds {self.convert_ids_to_tokens(bad)}: special and timestamp tokens are not allowed"
            )
        return encoding.convert_to_tensors(return_tensors)["input_ids"]

    def strip_prompt(self, token_ids: list[int]) -> list[int]:
        """Ids without a leading ``<|startofprev|>`` prompt: from ``<|startoftranscript|>`` on
        (nothing when it is missing); other sequences as they are."""
        if token_ids and token_ids[0] == self._backend.token_to_id("<|startofprev|>"):
            start = self._backend.token_to_id("<|startoftranscript|>")
            return token_ids[token_ids.index(start):] if start in token_ids else []
        return token_ids

    # ---------------------------------------------------------------- decoding
    def decode(
        self,
        token_ids: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        output_offsets: bool = False,
        time_precision: float = 0.02,
        decode_with_timestamps: bool = False,
        normalize: bool = False,
        basic_normalize: bool = False,
        remove_diacritics: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Ids -> text, timestamp tokens left out (``decode_with_timestamps=True``: written as
        ``<|1.08|>``). ``skip_special_tokens`` also drops a ``<|startofprev|>`` prompt.
        ``output_offsets=True`` returns ``{"text", "offsets": [{"text", "timestamp": (start, end)}]}``
        (seconds, ``time_precision`` per timestamp step). ``basic_normalize`` lower-cases and drops
        symbols and bracketed words (``remove_diacritics`` too); ``normalize`` (the reference's
        English normalizer) is not available here.

        Example::

            >>> tok = AutoTokenizer.from_pretrained("tests/fixtures/tokenizers/whisper-base")
            >>> ids = [50258, 50259, 50359, 50364, 2425, 13, 50414, 50257]
            >>> tok.decode(ids), tok.decode(ids, skip_special_tokens=True)
            ('<|startoftranscript|><|en|><|transcribe|> Hello.<|endoftext|>', ' Hello.')
            >>> tok.decode(ids, output_offsets=True)["offsets"]
            [{'text': ' Hello.', 'timestamp': (0.0, 1.0)}]
        """
        if normalize:
            raise UnsupportedOptionError(
                "normalize=True (Whisper's English text normalizer) is not implemented: use basic_normalize=True "
                "(lower case, no symbols; remove_diacritics=True for accents), or normalize the text yourself"
            )
        ids = _to_python_ids(token_ids)
        batched = isinstance(ids, list) and bool(ids) and isinstance(ids[0], (list, tuple))
        rows = [list(r) for r in ids] if batched else [ids]
        if skip_special_tokens and not batched and isinstance(ids, list):
            rows = [self.strip_prompt(ids)]  # as the reference: a batch keeps its prompts
        if decode_with_timestamps:
            texts = [self._decode_with_timestamps(self._as_list(r), skip_special_tokens, time_precision) for r in rows]
        else:
            texts = []
            for row in rows:
                text = self._decode_one(row, skip_special_tokens, clean_up_tokenization_spaces)
                if basic_normalize:
                    text = self.basic_normalize(text, remove_diacritics=remove_diacritics)
                texts.append(_TIMESTAMP.sub("", text))
        text = texts if batched else texts[0]
        if output_offsets:
            if batched and len(rows) > 1:
                raise InvalidInputError("output_offsets=True decodes one sequence at a time; use batch_decode")
            return {"text": text, "offsets": self._offsets(self._as_list(rows[0] if batched else ids), time_precision)}
        return text

    def batch_decode(
        self, sequences: Any, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool | None = None,
        **kwargs: Any,
    ) -> list[Any]:  # fmt: skip
        """One :meth:`decode` per sequence, with the same options (``output_offsets=True``: a dict each)."""
        seqs = _to_python_ids(sequences)
        if not seqs:
            return []
        if not isinstance(seqs[0], (list, tuple)):
            seqs = [seqs]
        if kwargs.get("output_offsets"):
            return [self.decode(list(s), skip_special_tokens, clean_up_tokenization_spaces, **kwargs) for s in seqs]
        return self.decode([list(s) for s in seqs], skip_special_tokens, clean_up_tokenization_spaces, **kwargs)

    @staticmethod
    def _as_list(ids: Any) -> list[int]:
        return [ids] if isinstance(ids, int) else list(ids)

    def _decode_with_timestamps(
        self, ids: list[int], skip_special_tokens: bool, time_precision: float, segment_size: int = 1500
    ) -> str:
        # each timestamp in the text as <|t.tt|>; when timestamps start over (the next 30-s window),
        # the ones after continue from the end of the previous window
        begin = self.timestamp_begin
        parts: list[Any] = [[]]
        cur_max = prev_len = penultimate = 0.0
        for i, token in enumerate(ids):
            if token < begin:
                parts[-1].append(token)
                continue
            stamp = float((token - begin) * time_precision)
            if stamp < cur_max:
                single_ending = i >= 2 and not (ids[i - 1] >= begin and ids[i - 2] >= begin)
                if single_ending:
                    prev_len += time_precision * segment_size
                else:  # a pair "end, start" across windows: the end was this window's start
                    cur_max = penultimate
                    prev_len += penultimate
                    parts = parts[:-2]
            penultimate, cur_max = cur_max, stamp
            parts += [f"<|{stamp + prev_len:.2f}|>", []]
        return "".join(
            p if isinstance(p, str) else (self._decode_one(p, skip_special_tokens, None) if p else "") for p in parts
        )

    def _offsets(self, ids: list[int], time_precision: float, segment_size: int = 1500) -> list[dict[str, Any]]:
        # segments between timestamp pairs: a pair of adjacent timestamps closes one and opens the next
        begin = self.timestamp_begin
        stamps = [i for i, t in enumerate(ids) if t >= begin]
        cuts = [i + 1 for i in range(len(ids) - 1) if ids[i] >= begin and ids[i + 1] >= begin]
        if not cuts and len(stamps) <= 1:
            return []
        if stamps[-1] + 1 not in cuts:
            cuts.append(stamps[-1] + 1)
        offsets = []
        last, cur_max, prev_len = stamps[0], 0, 0
        for cut in cuts:
            piece = ids[last:cut]
            if len(piece) > 1:
                start, end = piece[0] - begin, piece[-1] - begin
                if start < cur_max:  # timestamps started over: the next window
                    single_ending = last >= 2 and not (ids[last - 2] >= begin and ids[last - 1] >= begin)
                    prev_len += segment_size if single_ending else cur_max
                cur_max = end
                text = _TIMESTAMP.sub("", self._decode_one(piece, False, None))
                offsets.append({
                    "text": text,
                    "timestamp": (start * time_precision + prev_len * time_precision,
                                  end * time_precision + prev_len * time_precision),
                })  # fmt: skip
            last = cut
        return offsets

    def normalize(self, text: str) -> str:
        """Whisper's English normalizer (spelled-out numbers, British spellings...): not implemented."""
        raise UnsupportedOptionError(
            "Whisper's English text normalizer is not implemented: use basic_normalize(text) instead"
        )

    @staticmethod
    def basic_normalize(text: str, remove_diacritics: bool = False) -> str:
        """Whisper's basic normalizer, for comparing transcripts (word error rates) in any language:
        lower case, words in brackets or parentheses dropped, marks, symbols and punctuation turned
        into spaces (``remove_diacritics``: accents dropped, æ -> ae...), spaces collapsed.

        Example::

            >>> WhisperTokenizer.basic_normalize("Ça va? [Music] (laughs) Très   bien!", remove_diacritics=True)
            'ca va tres bien '
        """
        s = re.sub(r"[<\[][^>\]]*[>\]]", "", text.lower())
        s = re.sub(r"\(([^)]+?)\)", "", s)
        if remove_diacritics:
            s = "".join(_without_diacritic(c) for c in unicodedata.normalize("NFKD", s))
        else:
            s = "".join(" " if unicodedata.category(c)[0] in "MSP" else c for c in unicodedata.normalize("NFKC", s))
        return re.sub(r"\s+", " ", s.lower())


def _without_diacritic(char: str) -> str:
    if char in _ADDITIONAL_DIACRITICS:
        return _ADDITIONAL_DIACRITICS[char]
    category = unicodedata.category(char)
    if category == "Mn":
        return ""
    return " " if category[0] in "MSP" else char


_TOKENIZER_CLASSES["WhisperTokenizer"] = WhisperTokenizer
