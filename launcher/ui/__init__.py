"""The dashboard (`modelserve ui`): one aiohttp process that shows every deployment and fleet of
this machine from their records, live load from their own metrics and request summaries, their
logs, and lets a user stop, restart, load, unload and try them in a playground.

Like the gateway it imports no backend and no engine: what it needs from an engine is in the
deployment's record (core.telemetry.Telemetry, endpoints, processes); state changes go through
the same `modelserve` commands a user runs, or the gateway's own routes.
"""

BACKEND = "dashboard"  # the dashboard's own record says so (`status` lists it; it lists no card for itself)
KEY_ENV = "MODELSERVE_UI_API_KEY"  # the dashboard's key reaches it through its environment, never argv
