"""The translating front: a deployment's process in front of an engine that lacks an agent API
surface (``python -m launcher.front``; planned by ``lifecycle.fronted``, never started by hand).

It listens on the deployment's public port and the engine on a loopback port behind it. The
surfaces it was told to translate (Anthropic Messages, its count_tokens, OpenAI Responses) go
through the shared translator (``surfaces``) to the engine's Chat Completions; every other route
passes through untouched, a stream chunk by chunk, so clients keep one base URL.
"""
