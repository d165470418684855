"""Names and defaults shared by the tokenizer modules: the named special tokens, file names,
accepted argument values, and what the reference library's tokenizer classes declare."""

from __future__ import annotations

#: Named special tokens every tokenizer has (``None`` when unset).
SPECIAL_TOKEN_NAMES = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)

#: ``model_max_length`` when the checkpoint gives none (same value as the reference).
VERY_LARGE_INTEGER = int(1e30)
_LARGE_INTEGER = int(1e20)

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
ADDED_TOKENS_FILE = "added_tokens.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
CHAT_TEMPLATE_DIR = "chat_templates"

_VALID_TENSORS = ("pt", "np", "tf")
_PADDING_VALUES = (True, False, "longest", "max_length", "do_not_pad")
_TRUNCATION_VALUES = (True, False, "longest_first", "only_first", "only_second", "do_not_truncate")

# --- per-class defaults (what the reference's classes declare) ------------------------------------
_BERT_CLASSES = {
    "BertTokenizer", "ElectraTokenizer", "MobileBertTokenizer", "LayoutLMTokenizer",
    "SqueezeBertTokenizer", "LxmertTokenizer",
}  # fmt: skip
_ROBERTA_CLASSES = {"RobertaTokenizer", "BartTokenizer", "LongformerTokenizer", "LEDTokenizer"}
_GPT2_CLASSES = {"GPT2Tokenizer"}
_INPUT_NAMES_BY_CLASS: dict[str, tuple[str, ...]] = {
    **{
        name: ("input_ids", "token_type_ids", "attention_mask")
        for name in _BERT_CLASSES
        | {
            "ConvBertTokenizer",
            "DPRContextEncoderTokenizer",
            "DPRQuestionEncoderTokenizer",
            "MarkupLMTokenizer",
        }
    },
    **{
        name: ("input_ids", "attention_mask", "token_type_ids")
        for name in (
            "CanineTokenizer",
            "DebertaTokenizer",
            "DebertaV2Tokenizer",
            "LayoutLMv2Tokenizer",
            "TapasTokenizer",
        )
    },
    "FNetTokenizer": ("input_ids", "token_type_ids"),
    "LayoutLMv3Tokenizer": ("input_ids", "attention_mask", "bbox"),
}
_LEFT_PADDING_CLASSES = {
    "CodeLlamaTokenizer", "CohereTokenizer", "GemmaTokenizer", "LlamaTokenizer", "Siglip2Tokenizer",
    "XLNetTokenizer",
}  # fmt: skip
_BERT_SPECIALS = {
    "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]",
}  # fmt: skip
_GPT2_SPECIALS = {"unk_token": "<|endoftext|>", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}
_ROBERTA_SPECIALS = {
    "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>", "unk_token": "<unk>",
    "pad_token": "<pad>", "mask_token": "<mask>",
}  # fmt: skip
# The encoder-decoder classes (seq2seq_conversion.py builds their tokenizers). mBART's <mask>
# swallows the space before it (lstrip), as the reference's classes declare it.
_MBART_MASK = {"content": "<mask>", "lstrip": True, "rstrip": False, "normalized": False, "special": True}
_MBART50_SPECIALS = {
    "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>", "unk_token": "<unk>", "pad_token": "<pad>",
    "mask_token": _MBART_MASK,
}  # fmt: skip
_SEQ2SEQ_SPECIALS: dict[str, dict] = {
    "T5Tokenizer": {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"},
    "PegasusTokenizer": {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>", "mask_token": "<mask_2>"},
    "MBartTokenizer": {**_MBART50_SPECIALS, "bos_token": "<s>"},
    "MBart50Tokenizer": _MBART50_SPECIALS,
    "MarianTokenizer": {"unk_token": "<unk>", "eos_token": "</s>", "pad_token": "<pad>"},
}
# Special tokens the reference's classes fall back to when tokenizer_config.json does not name them.
_DEFAULT_SPECIALS: dict[str, dict] = {
    **dict.fromkeys(_BERT_CLASSES, _BERT_SPECIALS),
    **dict.fromkeys(_GPT2_CLASSES, _GPT2_SPECIALS),
    **dict.fromkeys(_ROBERTA_CLASSES, _ROBERTA_SPECIALS),
    **_SEQ2SEQ_SPECIALS,
}
# Config keys that only make sense at load time, or are private/paths: never written back.
_CONFIG_DROP_ON_SAVE = {
    "auto_map", "name_or_path", "tokenizer_file", "vocab_file", "merges_file", "special_tokens_map_file",
    "added_tokens_file", "init_inputs", "fast_tokenizer_files", "files_loaded", "backend", "is_local",
    "local_files_only", "device_map", "slow_tokenizer_class", "use_fast", "tokenizer_type", "revision",
    "cache_dir", "token", "trust_remote_code", "additional_special_tokens", "extra_special_tokens",
    "added_tokens_decoder", "add_bos_token", "add_eos_token", "sp_model_kwargs", "unk_id",
    "source_spm", "target_spm", "vocab", "target_vocab_file",
}  # fmt: skip


# tokenizer_class -> the Tokenizer subclass with that class's behaviour (language codes, Marian's
# two vocabularies...), filled in by seq2seq.py when the package is imported; loading.py picks
# from it (it cannot import the subclasses: they import it through tokenizer.py).
_TOKENIZER_CLASSES: dict[str, type] = {}


def _base_class_name(name: str | None) -> str | None:
    if not name:
        return None
    return name[:-4] if name.endswith("Fast") and name != "PreTrainedTokenizerFast" else name
