"""What the front's handlers share: its settings and the app's keys."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from aiohttp import web

from surfaces.response_store import ResponseStore

# The surfaces the front can translate, by the name --translate uses, and their routes.
ROUTES = {"messages": "/v1/messages", "count_tokens": "/v1/messages/count_tokens", "responses": "/v1/responses"}


@dataclass(frozen=True)
class FrontConfig:
    upstream: str  # the engine's base URL, without /v1
    translate: tuple[str, ...]  # keys of ROUTES
    api_key: str | None = None  # checked on translated routes and sent to the engine
    tools: bool = True  # False: the engine has no tool calling (surfaces.chat.without_tools)
    structured_output: bool = True  # False: it cannot hold a reply to a JSON schema (surfaces.chat.without_format)


CONFIG: web.AppKey[FrontConfig] = web.AppKey("config", FrontConfig)
CLIENT: web.AppKey[aiohttp.ClientSession] = web.AppKey("client", aiohttp.ClientSession)
STORE: web.AppKey[ResponseStore] = web.AppKey("store", ResponseStore)
