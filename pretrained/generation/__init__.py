"""Text generation: generate(), its configuration, logits processors, KV caches and streamers.

Example::

    >>> from pretrained.generation import GenerationConfig, TopPLogitsWarper  # doctest: +SKIP
    >>> model.generate(**tok(["Hi"], return_tensors="pt"), max_new_tokens=20,   # doctest: +SKIP
    ...                do_sample=True, top_p=0.9, seed=0)
"""

from .config import GenerationConfig
from .logits import (
    LogitsProcessor,
    LogitsProcessorList,
    MinLengthLogitsProcessor,
    MinNewTokensLengthLogitsProcessor,
    MinPLogitsWarper,
    NoBadWordsLogitsProcessor,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from .outputs import GenerateBeamDecoderOnlyOutput, GenerateDecoderOnlyOutput
from .search import generate
from .stopping import (
    EosTokenCriteria,
    MaxLengthCriteria,
    MaxTimeCriteria,
    StoppingCriteria,
    StoppingCriteriaList,
    StopStringCriteria,
)
from .streaming import BaseStreamer, TextIteratorStreamer, TextStreamer

__all__ = [
    "generate", "GenerationConfig", "GenerateDecoderOnlyOutput", "GenerateBeamDecoderOnlyOutput",
    "LogitsProcessor", "LogitsProcessorList", "TemperatureLogitsWarper", "TopKLogitsWarper",
    "TopPLogitsWarper", "MinPLogitsWarper", "RepetitionPenaltyLogitsProcessor",
    "NoRepeatNGramLogitsProcessor", "NoBadWordsLogitsProcessor", "MinLengthLogitsProcessor",
    "MinNewTokensLengthLogitsProcessor", "StoppingCriteria", "StoppingCriteriaList",
    "MaxLengthCriteria", "MaxTimeCriteria", "EosTokenCriteria", "StopStringCriteria",
    "BaseStreamer", "TextStreamer", "TextIteratorStreamer",
]
