"""One file per architecture; see pretrained.auto.MODEL_TYPES."""
