"""Whisper's languages and tasks: the table the tokenizer, generate() and the ASR pipeline share.

It is its own module because ``tokenization/`` and ``generation/`` may not import each other
(docs/architecture.md, "Import rules"); it imports nothing.

The order of :data:`LANGUAGES` is the order of the language tokens in Whisper's vocabulary: the
token of the k-th language is ``<|startoftranscript|>`` + 1 + k. Names are accepted wherever
codes are (``"french"`` or ``"fr"``), plus a few aliases (``"castilian"`` -> ``"es"``).

Example::

    >>> language_code("French"), LANGUAGES["fr"], language_index("fr")
    ('fr', 'french', 6)
"""

from __future__ import annotations

#: Whisper's language codes -> names, in vocabulary order.
LANGUAGES: dict[str, str] = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian", "ko": "korean",
    "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish", "pl": "polish", "ca": "catalan",
    "nl": "dutch", "ar": "arabic", "sv": "swedish", "it": "italian", "id": "indonesian", "hi": "hindi",
    "fi": "finnish", "vi": "vietnamese", "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay",
    "cs": "czech", "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian", "la": "latin",
    "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak", "te": "telugu", "fa": "persian",
    "lv": "latvian", "bn": "bengali", "sr": "serbian", "az": "azerbaijani", "sl": "slovenian",
    "kn": "kannada", "et": "estonian", "mk": "macedonian", "br": "breton", "eu": "basque",
    "is": "icelandic", "hy": "armenian", "ne": "nepali", "mn": "mongolian", "bs": "bosnian",
    "kk": "kazakh", "sq": "albanian", "sw": "swahili", "gl": "galician", "mr": "marathi",
    "pa": "punjabi", "si": "sinhala", "km": "khmer", "sn": "shona", "yo": "yoruba", "so": "somali",
    "af": "afrikaans", "oc": "occitan", "ka": "georgian", "be": "belarusian", "tg": "tajik",
    "sd": "sindhi", "gu": "gujarati", "am": "amharic", "yi": "yiddish", "lo": "lao", "uz": "uzbek",
    "fo": "faroese", "ht": "haitian creole", "ps": "pashto", "tk": "turkmen", "nn": "nynorsk",
    "mt": "maltese", "sa": "sanskrit", "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan",
    "tl": "tagalog", "mg": "malagasy", "as": "assamese", "tt": "tatar", "haw": "hawaiian",
    "ln": "lingala", "ha": "hausa", "ba": "bashkir", "jw": "javanese", "su": "sundanese", "yue": "cantonese",
}  # fmt: skip

#: Language names (and the aliases Whisper accepts) -> codes.
TO_LANGUAGE_CODE: dict[str, str] = {
    **{name: code for code, name in LANGUAGES.items()},
    "burmese": "my", "valencian": "ca", "flemish": "nl", "haitian": "ht", "letzeburgesch": "lb",
    "pushto": "ps", "panjabi": "pa", "moldavian": "ro", "moldovan": "ro", "sinhalese": "si",
    "castilian": "es", "mandarin": "zh",
}  # fmt: skip

#: Whisper's tasks, each a token (``<|transcribe|>``, ``<|translate|>``).
TASKS = ("transcribe", "translate")


def language_code(language: str) -> str | None:
    """The code of a language given by code or name (any case); None when Whisper has no such language."""
    name = language.lower()
    if name in TO_LANGUAGE_CODE:
        return TO_LANGUAGE_CODE[name]
    return name if name in LANGUAGES else None


def language_index(code: str) -> int:
    """Position of a language code among the vocabulary's language tokens (``KeyError`` if unknown)."""
    return _ORDER[code]


_ORDER = {code: k for k, code in enumerate(LANGUAGES)}
