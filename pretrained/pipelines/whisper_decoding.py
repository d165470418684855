"""Whisper's ASR output decoding: the tokens of every chunk of a long recording -> text and chunks.

The ASR pipeline cuts long audio into overlapping windows (``chunk_length_s`` with
``stride_length_s`` of overlap on each side) and Whisper transcribes each one. :func:`decode_asr`
joins those transcripts as the reference's ``_decode_asr`` does:

* text tokens of consecutive windows are merged where they overlap: the alignment with the most
  equal tokens (:func:`find_longest_common_sequence`), the left window trusted for the first half
  of the overlap and the right one for the second;
* with timestamps, every ``<|t|>`` pair closes a chunk ``{"text", "timestamp": (start, end)}``,
  in seconds of the whole recording (each window's offset is its start less its left stride);
  timestamps inside a window's strides are not used to split, as the neighbour sees that audio too;
* a language token starts a chunk's ``"language"`` (``return_language=True``); without timestamps
  a change of language closes the chunk.

Example::

    >>> from pretrained.tokenization import AutoTokenizer
    >>> tok = AutoTokenizer.from_pretrained("tests/fixtures/tokenizers/whisper-base")
    >>> left = tok.encode(" one two three four", add_special_tokens=False)
    >>> right = tok.encode(" three four five six", add_special_tokens=False)
    >>> decode_asr(tok, [{"tokens": left}, {"tokens": right}], return_timestamps=False,
    ...            return_language=False, time_precision=0.02)
    (' one two three four five six', {})
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import InvalidInputError, UnsupportedOptionError
from ..whisper_languages import LANGUAGES

logger = logging.getLogger(__name__)


def find_longest_common_sequence(sequences: list[list[int]]) -> list[int]:
    """Token sequences of overlapping windows joined into one.

    Each next sequence is slid along the end of what is joined so far; the position with the best
    share of equal tokens (more than one, longer overlaps winning ties) is the overlap. The left
    sequence is kept up to the middle of the overlap, the right one from its middle on.

    Example::

        >>> find_longest_common_sequence([[1, 2, 3, 4, 5], [3, 4, 5, 6, 7], [6, 7, 8]])
        [1, 2, 3, 4, 5, 6, 7, 8]
    """
    left = list(sequences[0])
    total: list[int] = []
    for right in sequences[1:]:
        best = 0.0
        best_span = (len(left), len(left), 0, 0)  # no overlap: everything of both
        n_left, n_right = len(left), len(right)
        for i in range(1, n_left + n_right):
            left_start, left_stop = max(0, n_left - i), min(n_left, n_left + n_right - i)
            right_start, right_stop = max(0, i - n_left), min(n_right, i)
            matches = sum(a == b for a, b in zip(left[left_start:left_stop], right[right_start:right_stop]))
            score = matches / i + i / 10000.0  # the epsilon favours long perfect matches
            if matches > 1 and score > best:
                best, best_span = score, (left_start, left_stop, right_start, right_stop)
        left_start, left_stop, right_start, right_stop = best_span
        total.extend(left[: (left_start + left_stop) // 2])
        left = list(right[(right_start + right_stop) // 2:])
    total.extend(left)
    return total


def decode_asr(
    tokenizer: Any,
    model_outputs: list[dict[str, Any]],
    *,
    return_timestamps: bool | str | None,
    return_language: bool | None,
    time_precision: float,
    segment_size: int = 1500,
) -> tuple[str, dict[str, Any]]:
    """The text of a chunked Whisper transcription, and ``{"chunks": [...]}`` when asked for.

    ``model_outputs``: one dict per window, in order: ``"tokens"`` (the generated ids, a tensor or
    list of shape ``(1, n)`` or ``(n,)``) and, for windows cut from longer audio, ``"stride"``:
    ``(window_length, left_stride, right_stride)`` in seconds. ``return_timestamps=True`` gives
    chunks ``{"text", "timestamp": (start, end)}``; ``return_language=True`` adds ``"language"``
    (a name, e.g. ``"french"``) to each. ``time_precision``: seconds per timestamp step (0.02 for
    Whisper). Word-level timestamps (``return_timestamps="word"``) need the cross-attention
    alignment, which is not implemented: :class:`UnsupportedOptionError`.

    Example::

        >>> from pretrained.tokenization import AutoTokenizer
        >>> tok = AutoTokenizer.from_pretrained("tests/fixtures/tokenizers/whisper-base")
        >>> ids = [50258, 50259, 50359, 50364] + tok.encode(" Hi.", add_special_tokens=False) + [50414, 50257]
        >>> decode_asr(tok, [{"tokens": ids}], return_timestamps=True, return_language=True, time_precision=0.02)
        (' Hi.', {'chunks': [{'language': 'english', 'timestamp': (0.0, 1.0), 'text': ' Hi.'}]})
    """
    if return_timestamps == "word":
        raise UnsupportedOptionError(
            "return_timestamps='word' needs word alignment from Whisper's cross-attention (DTW), which is not "
            "implemented: use return_timestamps=True for segment timestamps"
        )
    state = _Decoder(tokenizer, bool(return_timestamps), time_precision, segment_size)
    for output in model_outputs:
        state.add_window(_token_row(output.get("tokens")), output.get("stride"))
    chunks = state.finish()

    text = "".join(chunk["text"] for chunk in chunks)
    if not (return_timestamps or return_language):
        return text, {}
    for chunk in chunks:
        if return_timestamps:
            chunk["timestamp"] = tuple(chunk["timestamp"])
        else:
            del chunk["timestamp"]
        if not return_language:
            del chunk["language"]
    return text, {"chunks": chunks}


class _Decoder:
    """The state carried from token to token and window to window."""

    def __init__(self, tokenizer: Any, timestamps: bool, time_precision: float, segment_size: int) -> None:
        self.tok = tokenizer
        self.timestamps = timestamps
        self.precision = time_precision
        self.segment_size = segment_size
        self.begin = tokenizer.convert_tokens_to_ids("<|notimestamps|>") + 1  # <|0.00|>
        self.special = set(tokenizer.all_special_ids)
        self.prompt_id = tokenizer.convert_tokens_to_ids("<|startofprev|>")
        self.start_id = tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
        self.language: str | None = None
        self.chunks: list[dict[str, Any]] = []
        self.chunk = self._new_chunk()
        self.pending: list[list[int]] = []  # text of the open chunk, one list per window, to be merged
        self.time_offset = 0.0  # seconds from the recording's start to this window's timestamp 0
        self.skip = False  # the timestamp after a skipped one (its pair) is skipped too

    def _new_chunk(self) -> dict[str, Any]:
        return {"language": self.language, "timestamp": [None, None], "text": ""}

    def _close(self, tokens: list[int]) -> None:
        self.pending.append(tokens)
        self.chunk["text"] = self.tok.decode(find_longest_common_sequence(self.pending))
        self.chunks.append(self.chunk)
        self.pending = []
        self.chunk = self._new_chunk()

    def add_window(self, ids: list[int], stride: Any) -> None:
        ids = _strip_prompt(ids, self.prompt_id, self.start_id)
        begin, precision = self.begin, self.precision
        first_timestamp: float = begin  # timestamps before it lie in the left stride
        last_timestamp = None  # timestamps from it on lie in the right stride
        if stride is not None:
            window, left, right = stride
            self.time_offset -= left
            if left:
                first_timestamp = left / precision + begin
            if right:
                right_start = window - right
                for token in reversed(ids):
                    if token >= begin:
                        # the last timestamp is always in the right stride, others until one is before it
                        if last_timestamp is not None and (token - begin) * precision < right_start:
                            break
                        last_timestamp = token
        # long-form output: timestamps start over in each 30-s segment
        cur_max = prev_len = penultimate = 0.0
        current: list[int] = []
        for i, token in enumerate(ids):
            if token in self.special:
                name = LANGUAGES.get(self.tok.convert_ids_to_tokens(token)[2:-2])
                if name is None:
                    continue  # another special token: ignored
                if self.language and name != self.language and not self.timestamps:
                    self._close(current)  # without timestamps, a new language starts a chunk
                    current = []
                self.chunk["language"] = name
                self.language = name
            elif token >= begin:
                stamp = float((token - begin) * precision)
                if stamp < cur_max:  # the next segment has started
                    single_ending = i >= 2 and not (ids[i - 1] >= begin and ids[i - 2] >= begin)
                    if single_ending:
                        prev_len += precision * self.segment_size
                    else:
                        cur_max = penultimate
                        prev_len += penultimate
                penultimate, cur_max = cur_max, stamp
                time = round((token - begin) * precision + self.time_offset + prev_len, 2)
                if last_timestamp and token >= last_timestamp:
                    self.skip = True  # in the right stride: the next window decides
                elif self.skip or (self.pending and token < first_timestamp):
                    self.skip = False
                elif self.chunk["timestamp"][0] is None:
                    self.chunk["timestamp"][0] = time
                elif time != self.chunk["timestamp"][0]:  # an end equal to the start is read as a start
                    self.chunk["timestamp"][1] = time
                    self._close(current)
                    current = []
            else:
                current.append(token)
        if stride is not None:
            self.time_offset += window - right
        if current:
            self.pending.append(current)
        elif not any(self.pending):
            self.chunk = self._new_chunk()
            self.pending = []

    def finish(self) -> list[dict[str, Any]]:
        if self.pending:
            if self.timestamps:
                logger.warning(
                    "Whisper did not predict an ending timestamp, which can happen if audio is cut off in the middle "
                    "of a word. Also make sure WhisperTimeStampLogitsProcessor was used during generation."
                )
            self.chunk["text"] = self.tok.decode(find_longest_common_sequence(self.pending))
            self.chunks.append(self.chunk)
        return self.chunks


def _strip_prompt(ids: list[int], prompt_id: int, start_id: int) -> list[int]:
    # a <|startofprev|> prompt in front of the transcription is not part of it
    if ids and ids[0] == prompt_id:
        return ids[ids.index(start_id):] if start_id in ids else []
    return ids


def _token_row(tokens: Any) -> list[int]:
    if tokens is None:
        raise InvalidInputError('each model output needs "tokens" (the generated ids)')
    tolist = getattr(tokens, "tolist", None)
    rows = tolist() if callable(tolist) else list(tokens)
    if rows and isinstance(rows[0], (list, tuple)):
        if len(rows) != 1:
            raise InvalidInputError(f'"tokens" must hold one sequence (shape (1, n) or (n,)), got {len(rows)} rows')
        rows = list(rows[0])
    return [int(t) for t in rows]
