"""`modelserve ui`: the dashboard in a browser."""

from __future__ import annotations

import json
import sys

import click

from launcher.cli.root import main, report

KEY_HELP = "Require this key (the page asks for it once); needed on any address but loopback [$MODELSERVE_UI_API_KEY]."


@main.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("-p", "--port", type=int, default=8090, show_default=True, help="Port to serve the page on.")
@click.option("--api-key", envvar="MODELSERVE_UI_API_KEY", show_envvar=False, help=KEY_HELP)
@click.option("--name", default="ui", show_default=True, help="Its record's name (for status, down, logs).")
@click.option("--foreground", is_flag=True, help="Stay in the foreground, supervised (what its systemd unit runs).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def ui(host: str, port: int, api_key: str | None, name: str, foreground: bool, as_json: bool) -> None:
    """Start the dashboard: every deployment and fleet, live load, recent requests, logs, a playground.

    \b
    modelserve ui                                   # then open http://127.0.0.1:8090/
    MODELSERVE_UI_API_KEY=s3cret modelserve ui --host 0.0.0.0
    modelserve down ui
    """
    from launcher.lifecycle import dashboard

    if foreground:
        sys.exit(dashboard.run_ui(host=host, port=port, api_key=api_key, name=name, report=report))
    result = dashboard.up_ui(host=host, port=port, api_key=api_key, name=name, report=report)
    if as_json:
        click.echo(json.dumps({"name": name, "url": result.url, "pid": result.record.pid,
                               "ready_seconds": round(result.ready_seconds, 2), "log": result.record.main_log}, indent=2))  # fmt: skip
        return
    click.echo(f"dashboard ready: {result.url}  ({'API key required' if api_key else 'loopback, no key'})\n"
               f"  pid {result.record.pid}, log {result.record.main_log}\n  stop it with: modelserve down {name}")  # fmt: skip
