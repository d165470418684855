"""Fine-tuning: :class:`Trainer`, :class:`TrainingArguments`, data collators, callbacks.

Example::

    >>> from pretrained.training import Trainer, TrainingArguments    # doctest: +SKIP
    >>> trainer = Trainer(model=model, args=TrainingArguments("out"), train_dataset=data)  # doctest: +SKIP
    >>> trainer.train()                                                # doctest: +SKIP
"""

from __future__ import annotations

from .arguments import TrainingArguments
from .callbacks import (EarlyStoppingCallback, PrinterCallback, ProgressCallback, TensorBoardCallback,
                        TrainerCallback, TrainerControl, TrainerState)
from .collators import (DataCollatorForLanguageModeling, DataCollatorForTokenClassification,
                        DataCollatorWithPadding, default_data_collator)
from .schedules import get_scheduler
from .trainer import Trainer
from .utils import EvalPrediction, PredictionOutput, TrainOutput, set_seed

__all__ = ["Trainer", "TrainingArguments", "TrainerCallback", "TrainerState", "TrainerControl",
           "EarlyStoppingCallback", "ProgressCallback", "PrinterCallback", "TensorBoardCallback",
           "DataCollatorWithPadding", "DataCollatorForLanguageModeling",
           "DataCollatorForTokenClassification", "default_data_collator", "get_scheduler",
           "EvalPrediction", "PredictionOutput", "TrainOutput", "set_seed"]
