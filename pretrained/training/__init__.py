"""Fine-tuning: :class:`Trainer`, :class:`TrainingArguments`, data collators, callbacks.

Example::

    >>> from pretrained.training import Trainer, TrainingArguments    # doctest: +SKIP
    >>> trainer = Trainer(model=model, args=TrainingArguments("out"), train_dataset=data)  # doctest: +SKIP
    >>> trainer.train()                                                # doctest: +SKIP
"""

from __future__ import annotations

from .arguments import TrainingArguments
from .audio import (DataCollatorForAudioClassification, DataCollatorSpeechSeq2SeqWithPadding,
                    DataCollatorWithAudioPadding)
from .callbacks import (EarlyStoppingCallback, PrinterCallback, ProgressCallback, TensorBoardCallback,
                        TrainerCallback, TrainerControl, TrainerState)
from .collators import (DataCollatorForLanguageModeling, DataCollatorForSeq2Seq,
                        DataCollatorForTokenClassification, DataCollatorWithPadding,
                        default_data_collator)
from .schedules import get_scheduler
from .seq2seq import Seq2SeqTrainer, Seq2SeqTrainingArguments
from .trainer import Trainer
from .utils import EvalPrediction, PredictionOutput, TrainOutput, set_seed
from .vision import DataCollatorForImageClassification, DataCollatorForSemanticSegmentation, DefaultImageCollator

__all__ = ["Trainer", "TrainingArguments", "Seq2SeqTrainer", "Seq2SeqTrainingArguments",
           "TrainerCallback", "TrainerState", "TrainerControl", "EarlyStoppingCallback",
           "ProgressCallback", "PrinterCallback", "TensorBoardCallback", "DataCollatorWithPadding",
           "DataCollatorForLanguageModeling", "DataCollatorForTokenClassification",
           "DataCollatorForSeq2Seq", "DataCollatorWithAudioPadding",
           "DataCollatorForAudioClassification", "DataCollatorSpeechSeq2SeqWithPadding", "DataCollatorForImageClassification", "DataCollatorForSemanticSegmentation", "DefaultImageCollator", "default_data_collator", "get_scheduler", "EvalPrediction",
           "PredictionOutput", "TrainOutput", "set_seed"]
