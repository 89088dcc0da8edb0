"""The Hydra configs, shipped with the package: ``train.py`` and ``analyze.py`` read them from here, and
:func:`seq2king.training.compose` composes them for library callers (an installed seq2king needs no
checkout)."""
