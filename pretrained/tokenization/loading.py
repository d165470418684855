"""Reading a checkpoint's tokenizer files: tokenizer.json (or vocab.txt / vocab.json + merges.txt,
see :mod:`.conversion`), tokenizer_config.json, special_tokens_map.json and added_tokens.json
(legacy), chat_template.jinja and chat_templates/*.jinja."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenizers import AddedToken
from tokenizers import Tokenizer as _BackendTokenizer

from ..errors import TokenizerLoadError, TokenizerNotFoundError
from .constants import (
    ADDED_TOKENS_FILE,
    CHAT_TEMPLATE_DIR,
    CHAT_TEMPLATE_FILE,
    CONFIG_FILE,
    SPECIAL_TOKEN_NAMES,
    SPECIAL_TOKENS_MAP_FILE,
    TOKENIZER_FILE,
    _BERT_CLASSES,
    _DEFAULT_SPECIALS,
    _TOKENIZER_CLASSES,
    _base_class_name,
)
from .conversion import (
    _add_conversion_post_processor,
    _apply_class_settings,
    _bpe_from_vocab_merges,
    _wordpiece_from_vocab,
)
from .inputs import _error_detail, _is_fatal
from .sentencepiece_model import read_spm_model
from .seq2seq_conversion import (
    MARIAN_FILES,
    SEQ2SEQ_CLASSES,
    SPM_FILES,
    apply_pipeline,
    backend_from_spm,
    check_marian_vocab,
    complete_config,
    marian_backend,
    marian_language_codes,
    precompiled_charsmap,
)

if TYPE_CHECKING:
    from .tokenizer import Tokenizer

logger = logging.getLogger(__package__)  # "pretrained.tokenization": one logger for the package


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TokenizerLoadError(f"{path}: {what} is not valid UTF-8 ({e})") from None
    except OSError as e:
        raise TokenizerLoadError(f"{path}: cannot read {what}: {e}") from None


def _read_json(path: Path, what: str) -> Any:
    text = _read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise TokenizerLoadError(
            f"{path}: {what} is not valid JSON ({e}); re-download or re-save it"
        ) from None


def _load_tokenizer_json(path: Path) -> _BackendTokenizer:
    text = _read_text(path, TOKENIZER_FILE)
    if not text.strip():
        raise TokenizerLoadError(f"{path}: tokenizer.json is empty; re-download or re-save the tokenizer")
    try:
        return _BackendTokenizer.from_str(text)
    except BaseException as e:  # tokenizers raises Exception, or pyo3's PanicException (a BaseException)
        if _is_fatal(e):
            raise
        detail = _error_detail(e)
        raise TokenizerLoadError(
            f"{path}: tokenizer.json cannot be loaded by the tokenizers library ({detail}). The file is "
            "truncated, malformed, or uses a model type this version of tokenizers does not know"
        ) from None


def _load_into(tok: Tokenizer, files: Any, name: str, overrides: dict[str, Any]) -> None:
    config_path = files.get(CONFIG_FILE)
    config: dict[str, Any] = {}
    if config_path is not None:
        loaded = _read_json(config_path, CONFIG_FILE)
        if not isinstance(loaded, dict):
            raise TokenizerLoadError(f"{config_path}: tokenizer_config.json must hold a JSON object")
        config = loaded
    if config.get("auto_map"):
        logger.info("%s: ignoring auto_map in tokenizer_config.json (remote code is never executed)", name)

    added_tokens_decoder = config.pop("added_tokens_decoder", None)
    if added_tokens_decoder is not None and not isinstance(added_tokens_decoder, Mapping):
        raise TokenizerLoadError(f"{config_path}: added_tokens_decoder must be an object of id -> token")
    if added_tokens_decoder is None:
        # Legacy files, read only when the config does not list its added tokens (like the reference).
        map_path = files.get(SPECIAL_TOKENS_MAP_FILE)
        if map_path is not None:
            smap = _read_json(map_path, SPECIAL_TOKENS_MAP_FILE)
            if not isinstance(smap, dict):
                raise TokenizerLoadError(f"{map_path}: special_tokens_map.json must hold a JSON object")
            for key, value in smap.items():
                if key in ("additional_special_tokens", "extra_special_tokens") and isinstance(value, list):
                    existing = list(
                        config.get("additional_special_tokens") or config.get("extra_special_tokens") or []
                    )
                    seen = {t["content"] if isinstance(t, Mapping) else str(t) for t in existing}
                    for t in value:
                        content = t["content"] if isinstance(t, Mapping) else str(t)
                        if content not in seen:
                            existing.append(t)
                            seen.add(content)
                    config.pop("extra_special_tokens", None)
                    config["additional_special_tokens"] = existing
                else:
                    config[key] = value
        added_path = files.get(ADDED_TOKENS_FILE)
        if added_path is not None:
            added = _read_json(added_path, ADDED_TOKENS_FILE)
            if not isinstance(added, dict) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in added.values()
            ):
                raise TokenizerLoadError(f"{added_path}: added_tokens.json must map token -> integer id")
            specials = {str(config.get(k)) for k in SPECIAL_TOKEN_NAMES if isinstance(config.get(k), str)}
            added_tokens_decoder = {
                i: {"content": t, "normalized": t not in specials, "special": t in specials}
                for t, i in added.items()
            }

    # Chat templates in their own files win over the config entry.
    templates: dict[str, str] = {}
    jinja = files.get(CHAT_TEMPLATE_FILE)
    if jinja is not None:
        templates["default"] = _read_text(jinja, CHAT_TEMPLATE_FILE)
    folder = getattr(files, "folder", None) or getattr(files, "local_dir", None)  # hub repos: cached snapshot
    if folder is not None and (Path(folder) / CHAT_TEMPLATE_DIR).is_dir():
        for path in sorted((Path(folder) / CHAT_TEMPLATE_DIR).glob("*.jinja")):
            templates[path.name[: -len(".jinja")]] = _read_text(path, "chat template")
    if len(templates) == 1 and "default" in templates:
        config["chat_template"] = templates["default"]
    elif templates:
        config["chat_template"] = templates

    if "additional_special_tokens" in overrides and "extra_special_tokens" not in overrides:
        overrides["extra_special_tokens"] = overrides.pop("additional_special_tokens")
    if "extra_special_tokens" in overrides:
        config.pop("additional_special_tokens", None)
    config.update(overrides)
    cls_name = _base_class_name(config.get("tokenizer_class")) or _class_from_model_type(files)
    if cls_name and not config.get("tokenizer_class"):
        config["tokenizer_class"] = cls_name
    subclass = _TOKENIZER_CLASSES.get(cls_name or "")
    if subclass is not None and type(tok) is not subclass and issubclass(subclass, type(tok)):
        tok.__class__ = subclass  # AutoTokenizer: the class with this tokenizer's own behaviour
    if cls_name in SEQ2SEQ_CLASSES:
        complete_config(cls_name, config)
    specials = {
        k: config.get(k, _DEFAULT_SPECIALS.get(cls_name or "", {}).get(k)) for k in SPECIAL_TOKEN_NAMES
    }

    from_json = True
    tok_json = files.get(TOKENIZER_FILE)
    spm_name = SPM_FILES.get(cls_name or "")
    own_files = getattr(tok, "_backend_from_files", None)   # a class that reads its own files (CTC)
    if own_files is not None:
        backend = own_files(files, name, config)
        from_json = False
    elif cls_name == "MarianTokenizer":  # a slow class in the reference: never a tokenizer.json
        backend = _load_marian(tok, files, name, config)
        from_json = False
    elif tok_json is not None:
        backend = _load_tokenizer_json(tok_json)
    elif spm_name is not None and files.get(spm_name) is not None:
        backend = backend_from_spm(cls_name, read_spm_model(files.get(spm_name)), config)
        from_json = False
    else:
        from_json = False
        vocab_txt = files.get("vocab.txt")
        vocab_json = files.get("vocab.json") if (vocab_txt is None or cls_name not in _BERT_CLASSES) else None
        merges = files.get("merges.txt") if vocab_json is not None else None
        if vocab_json is not None and merges is not None:
            backend = _bpe_from_vocab_merges(vocab_json, merges, config)
        elif vocab_txt is not None:
            backend = _wordpiece_from_vocab(vocab_txt, config, specials)
        else:
            if spm_name is not None:
                raise TokenizerNotFoundError(
                    f"{name}: {cls_name} needs tokenizer.json or its SentencePiece model {spm_name}; neither "
                    "is there. Copy the file from the original checkpoint, or save the tokenizer again"
                )
            spm = files.get("tokenizer.model")
            if spm is not None:
                raise TokenizerLoadError(
                    f"{name}: only a SentencePiece tokenizer.model was found; converting it is not supported. "
                    "Load it with a library that has a converter and save_pretrained() it to get a tokenizer.json"
                )
            raise TokenizerNotFoundError(
                f"{name}: no tokenizer found. Looked for tokenizer.json, vocab.txt (WordPiece) and "
                "vocab.json + merges.txt (byte-level BPE); none is there"
                + (" (vocab.json without merges.txt)" if vocab_json is not None else "")
                + ". Pass the folder of a saved tokenizer"
            )

    tok._setup(
        backend,
        config,
        name_or_path=name,
        from_tokenizer_json=from_json,
        added_tokens_decoder=added_tokens_decoder,
    )
    if cls_name in SEQ2SEQ_CLASSES:
        if from_json:  # the reference's classes rebuild their pipeline around a tokenizer.json's vocabulary
            apply_pipeline(tok.backend_tokenizer, cls_name, precompiled_charsmap(tok.backend_tokenizer))
    elif not from_json:
        _add_conversion_post_processor(tok, cls_name, config)
    else:
        _apply_class_settings(tok.backend_tokenizer, cls_name, config)
    post_load = getattr(tok, "_post_load", None)
    if post_load is not None:
        post_load()  # class-specific: special-token templates, language codes


# Tokenizer classes the reference picks from config.json's model_type when tokenizer_config.json
# names none (facebook/wav2vec2-base-960h and its kind: vocab.json alone, no merges.txt).
_CLASS_BY_MODEL_TYPE = {"wav2vec2": "Wav2Vec2CTCTokenizer", "hubert": "Wav2Vec2CTCTokenizer"}


def _class_from_model_type(files: Any) -> str | None:
    if files.get(TOKENIZER_FILE) is not None or files.get("vocab.json") is None or files.get("merges.txt") is not None:
        return None
    path = files.get("config.json")
    try:
        model_type = json.loads(path.read_text(encoding="utf-8")).get("model_type") if path is not None else None
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return None
    return _CLASS_BY_MODEL_TYPE.get(model_type) if isinstance(model_type, str) else None


def _load_marian(tok: Tokenizer, files: Any, name: str, config: dict[str, Any]) -> _BackendTokenizer:
    """Marian's source-side tokenizer; the target side goes to ``tok._target_backend``. Both map
    SentencePiece pieces to vocab.json's ids (target_vocab.json's with ``separate_vocabs``)."""
    paths = {f: files.get(f) for f in MARIAN_FILES}
    missing = [f for f, p in paths.items() if p is None]
    if missing:
        raise TokenizerNotFoundError(
            f"{name}: MarianTokenizer needs source.spm, target.spm and vocab.json; missing: {', '.join(missing)}. "
            "Copy them from the original checkpoint (they are saved by save_pretrained)"
        )
    separate = bool(config.get("separate_vocabs", False))
    target_vocab_path = files.get("target_vocab.json") if separate else paths["vocab.json"]
    if target_vocab_path is None:
        raise TokenizerNotFoundError(
            f"{name}: separate_vocabs=true needs target_vocab.json next to vocab.json; it is not there"
        )
    source_vocab = check_marian_vocab(_read_json(paths["vocab.json"], "vocab.json"), paths["vocab.json"])
    target_vocab = check_marian_vocab(_read_json(target_vocab_path, target_vocab_path.name), target_vocab_path)
    unk = config.get("unk_token", "<unk>")
    unk = str(unk["content"]) if isinstance(unk, Mapping) else str(unk)
    specials = {
        str(v["content"]) if isinstance(v, Mapping) else str(v)
        for k, v in config.items()
        if k.endswith("_token") and isinstance(v, (str, Mapping))
    }
    codes = marian_language_codes(source_vocab) if not separate else []
    keep = specials | set(codes)
    backend = marian_backend(read_spm_model(paths["source.spm"]), source_vocab, unk, keep)
    tok._target_backend = marian_backend(read_spm_model(paths["target.spm"]), target_vocab, unk, keep)
    tok._marian_files = {k: Path(v) for k, v in {**paths, "target_vocab.json": target_vocab_path}.items()}
    config.setdefault("model_max_length", 512)
    # the >>xx<< target-language codes are whole tokens, never split (not special: decode keeps them)
    if codes:
        backend.add_tokens([AddedToken(c, normalized=False, special=False) for c in codes])
    return backend
