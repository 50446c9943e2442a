"""modelserve's built-in model server: ``python -m backends.builtin_server --model DIR``.

Importing this package imports nothing heavy; torch, transformers and flask load in the server
process only (see ``__main__``).
"""
