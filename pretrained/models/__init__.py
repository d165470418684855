"""One file per architecture; each registers itself (see :mod:`pretrained.auto`)."""
