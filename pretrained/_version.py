"""The package version, written here only: ``pretrained.__version__``, the ``pretrained_version``
that ``save_pretrained`` writes into config.json, and pyproject.toml
(``[tool.setuptools.dynamic]``) all read it."""

__version__ = "0.1.0"
