"""Chat Completions chunks -> the Responses stream, each event with its ``sequence_number``:

    response.created, response.in_progress,
    a text run:    response.output_item.added (message), response.content_part.added,
                   response.output_text.delta..., response.output_text.done,
                   response.content_part.done, response.output_item.done
    each call:     response.output_item.added (function_call), response.function_call_arguments.delta...,
                   response.function_call_arguments.done, response.output_item.done
    response.completed (response.incomplete when the budget ran out)

The final event carries the whole Response object, as the non-streamed answer would.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

from surfaces import chat
from surfaces.responses import call_item, message_item, response_object, usage
from surfaces.responses_wire import ResponsesRequest

Out = tuple[str, dict[str, Any]]  # (event type, data)


class ResponsesStream:
    """One stream's state: feed it the chat chunks in order, then ``finish()``."""

    def __init__(self, req: ResponsesRequest, *, rid: str, created_at: int | None = None) -> None:
        self._req = req
        self._rid = rid
        self._created = created_at if created_at is not None else int(time.time())
        self._seq = 0
        self.output: list[dict[str, Any]] = []  # finished items, as the final response lists them
        self._text: dict[str, Any] | None = None  # the open message item: id and text so far
        self._call: dict[str, Any] | None = None  # the open function_call item
        self._finish: str | None = None
        self._usage: chat.Usage | None = None
        self.final: dict[str, Any] | None = None  # the completed Response object, once finished

    def _event(self, kind: str, **fields: Any) -> Out:
        out = (kind, {"type": kind, **fields, "sequence_number": self._seq})
        self._seq += 1
        return out

    def _snapshot(self, status: str, output: list[dict[str, Any]], usage_: dict[str, Any] | None) -> dict[str, Any]:
        return response_object(self._req, rid=self._rid, created_at=self._created, status=status, output=output,
                               usage_=usage_)  # fmt: skip

    def start(self) -> list[Out]:
        snapshot = self._snapshot("in_progress", [], None)
        return [self._event("response.created", response=snapshot),
                self._event("response.in_progress", response=snapshot)]  # fmt: skip

    def feed(self, raw: Mapping[str, Any] | str) -> list[Out]:
        """One chat chunk: a parsed object, or its JSON text (parsed here, faster, by pydantic-core)."""
        chunk = chat.Chunk.model_validate_json(raw) if isinstance(raw, str) else chat.Chunk.model_validate(raw)
        out: list[Out] = []
        if chunk.usage is not None:
            self._usage = chunk.usage
        for choice in chunk.choices[:1]:
            if choice.delta.content:
                out += self._text_delta(choice.delta.content)
            for call in choice.delta.tool_calls or ():
                out += self._call_delta(call)
            if choice.finish_reason is not None:
                self._finish = choice.finish_reason
        return out

    def finish(self) -> list[Out]:
        out = self._close()
        if not self.output:  # nothing came: an empty message, as the plain answer has
            out += self._text_delta("") + self._close()
        calls = [i["arguments"] for i in self.output if i["type"] == "function_call"]
        whole = bool(calls) and all(chat.arguments_object(a) is not None for a in calls)
        status = "incomplete" if self._finish == "length" and not whole else "completed"
        self.final = self._snapshot(status, self.output, usage(self._usage))
        return [*out, self._event(f"response.{status}", response=self.final)]

    def error(self, status: int, message: str, *, code: str | None = None) -> list[Out]:
        """A failure after the 200 went out: the ``error`` event (the stream ends there)."""
        return [self._event("error", code=code or ("server_error" if status >= 500 else "invalid_request"),
                            message=message, param=None)]  # fmt: skip

    # ------------------------------------------------------------------------- items

    def _text_delta(self, text: str) -> list[Out]:
        out: list[Out] = []
        if self._text is None:
            out += self._close()
            self._text = {"id": f"msg_{uuid.uuid4().hex}", "text": ""}
            index = len(self.output)
            out.append(self._event("response.output_item.added", output_index=index,
                                   item=message_item("", item_id=self._text["id"], status="in_progress")))  # fmt: skip
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            out.append(self._event("response.content_part.added", item_id=self._text["id"], output_index=index,
                                   content_index=0, part=part))  # fmt: skip
        if text:
            self._text["text"] += text
            out.append(self._event("response.output_text.delta", item_id=self._text["id"], output_index=len(self.output),
                                   content_index=0, delta=text, logprobs=[]))  # fmt: skip
        return out

    def _call_delta(self, call: chat.CallDelta) -> list[Out]:
        out: list[Out] = []
        if self._call is None or self._call["index"] != call.index:
            out += self._close()
            self._call = {"index": call.index, "id": f"fc_{uuid.uuid4().hex}", "arguments": "",
                          "call_id": call.id or f"call_{uuid.uuid4().hex[:24]}", "name": call.function.name or ""}  # fmt: skip
            item = call_item(self._call["call_id"], self._call["name"], "", item_id=self._call["id"], status="in_progress")
            out.append(self._event("response.output_item.added", output_index=len(self.output), item=item))
        if call.function.arguments:
            self._call["arguments"] += call.function.arguments
            out.append(self._event("response.function_call_arguments.delta", item_id=self._call["id"],
                                   output_index=len(self.output), delta=call.function.arguments))  # fmt: skip
        return out

    def _close(self) -> list[Out]:
        index = len(self.output)
        if self._text is not None:
            item_id, text = self._text["id"], self._text["text"]
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            item = message_item(text, item_id=item_id)
            self._text = None
            self.output.append(item)
            return [self._event("response.output_text.done", item_id=item_id, output_index=index, content_index=0,
                                text=text, logprobs=[]),
                    self._event("response.content_part.done", item_id=item_id, output_index=index, content_index=0,
                                part=part),
                    self._event("response.output_item.done", output_index=index, item=item)]  # fmt: skip
        if self._call is not None:
            c, self._call = self._call, None
            item = call_item(c["call_id"], c["name"], c["arguments"] or "{}", item_id=c["id"])
            self.output.append(item)
            return [self._event("response.function_call_arguments.done", item_id=c["id"], output_index=index,
                                name=c["name"], arguments=item["arguments"]),
                    self._event("response.output_item.done", output_index=index, item=item)]  # fmt: skip
        return []
