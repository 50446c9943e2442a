"""The API surfaces modelserve translates: Anthropic Messages and OpenAI Responses, to and from
Chat Completions (the lingua franca every engine speaks).

Pure and shared: requests, responses, stream events and errors, with pydantic and the standard
library only. The built-in server serves both surfaces through it in-process; the translating
front (``launcher.front``) serves them in front of an engine that lacks them. Neither side is
imported here (an import-linter contract keeps it so).

- ``anthropic``: ``POST /v1/messages`` and ``/v1/messages/count_tokens`` (wire models in
  ``anthropic_wire``, the stream in ``anthropic_stream``);
- ``responses``: ``POST /v1/responses`` (wire models in ``responses_wire``, the stream in
  ``responses_stream``, ``previous_response_id`` in ``response_store``);
- ``chat``: the Chat Completions request, response and chunk models both translate through;
- ``sse``: reading and writing server-sent events; ``errors``: the one refusal type.
"""
