"""The Ollama backend: ``backend`` (the Backend class), ``source`` (which model for ``-m``),
``api`` (pull, create, copy over Ollama's HTTP API), ``progress`` (NDJSON status lines),
``binary`` (the ``ollama`` executable) and ``probes`` (readiness on /api).

Importing the package imports nothing else, so `status` can load the probes cheaply.
"""
