"""Tool calling and structured output for the built-in server.

``spec`` holds the request-side types (functions, the choice, a response format, parsed calls),
``parsers`` reads calls out of a model's text in its family's native format (or the generic JSON
one), ``prompt`` puts tools and tool turns into the chat, ``stream`` splits a stream into content
and tool-call deltas, ``constraints`` builds the grammars (llguidance) that make a call, or a
JSON reply, the only thing the model can write, and ``endgame`` makes such a reply end complete
within its token budget. Only ``constraints`` needs torch.
"""
