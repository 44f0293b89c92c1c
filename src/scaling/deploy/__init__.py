"""The deployed files: llama.cpp's tools (:mod:`.tools`), schema grammars for llama.cpp
(:mod:`.gbnf`), and GGUF evaluation with the measurements a deployment reads
(:mod:`.llamacpp`, run from the command line as ``python -m scaling.deploy``).

Importing this package imports nothing heavy: :mod:`.worker` runs in a process of its own
and must stay free of torch, so its memory is the deployed file's.
"""
