"""GGUF checkpoints (llama.cpp's single-file format): metadata, config, weights, tokenizer.

``reader`` parses the file (header, metadata, tensor table) over a memory map; ``dequant`` turns
stored blocks into floats; ``architectures`` maps llama.cpp's names onto a model's (config
dict, state-dict keys, Q/K row order); ``tokenizer`` builds a `tokenizers` tokenizer from the
metadata. Nothing here imports the model, tokenization or generation code: they import this.

Example::

    >>> from pretrained.gguf import load_gguf                                  # doctest: +SKIP
    >>> f = load_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")                       # doctest: +SKIP
    >>> f.config_dict()["num_hidden_layers"]                                   # doctest: +SKIP
    30
    >>> name, weight = next(f.tensors())                                       # doctest: +SKIP
    >>> name, weight.shape                                                     # doctest: +SKIP
    ('model.embed_tokens.weight', torch.Size([49152, 576]))
"""

from .architectures import SUPPORTED_ARCHITECTURES, GGUFCheckpoint
from .reader import (GGUFFile, GGUFTensorInfo, gguf_config_dict, gguf_path, load_gguf,
                     resolve_gguf)

__all__ = ["GGUFFile", "GGUFTensorInfo", "GGUFCheckpoint", "load_gguf", "resolve_gguf",
           "SUPPORTED_ARCHITECTURES", "gguf_path", "gguf_config_dict"]
