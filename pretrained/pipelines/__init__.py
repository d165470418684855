"""Task pipelines: preprocess -> forward -> postprocess.

Submodules are imported on use (``from pretrained.pipelines.feature_extraction import
load_sentence_embedder``), so importing this package costs nothing.
"""
