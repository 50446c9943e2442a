"""``modelserve config NAME --format F [--write PATH]``: a running deployment's agent client
config, printed or merged into a file (registered on the group in ``cli.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import click

from launcher import state
from launcher.client_formats import ENDPOINTS, FORMATS, RenderedConfig

WRITE_HELP = ("Merge into this file instead of printing (agentscope, agentfabric: by entry name, atomically, "
              "keeping other entries); other formats are written only to a new file.")  # fmt: skip


@click.command("config")
@click.argument("name")
@click.option("-f", "--format", "fmt", required=True, type=click.Choice(FORMATS), help="Which client to configure.")
@click.option("-w", "--write", "write_path", type=click.Path(dir_okay=False, path_type=Path), help=WRITE_HELP)
@click.option("--endpoint", type=click.Choice(list(ENDPOINTS)), help="Only this endpoint: post (/llm/), openai "
              "(/v1), ollama (native API) [every one the format can express].")  # fmt: skip
@click.option("--config-name", help="Entry name prefix (agentscope, agentfabric) [the one `up` used].")
@click.option("--max-tokens", type=click.IntRange(min=1), help="Max new tokens per reply [512].")
@click.option("--temperature", type=click.FloatRange(0, 2), help="Sampling temperature; 0 is greedy [0.7].")
@click.option("--request-timeout", type=click.FloatRange(0, min_open=True), help="Client read timeout, s [300].")
def config_command(name: str, fmt: str, write_path: Path | None, endpoint: str | None, config_name: str | None,
                   max_tokens: int | None, temperature: float | None, request_timeout: float | None) -> None:
    """Print (or --write) the config an agent client needs to use deployment NAME.

    \b
    modelserve config smollm2-135m -f agentscope --write ./model_config.json
    modelserve config smollm2-135m -f modelscope-agent
    modelserve config smollm2-135m -f agentfabric --write apps/agentfabric/config/model_config.json
    modelserve config smollm2-135m -f agentscope-v1 --temperature 0 > model.py
    modelserve config smollm2-135m -f agentscope-v2 --write model_v2.py
    set -a; eval "$(modelserve config smollm2-135m -f openai-env)"; set +a
    """
    from launcher import client_formats
    from launcher.spec import AgentScopeSettings

    record = state.load(name)
    given = {"max_tokens": max_tokens, "temperature": temperature, "request_timeout": request_timeout}
    # The settings `up` wrote its entries with, unless flags say otherwise.
    base_settings = {k: v for k, v in record.agentscope.items() if k in given}
    settings = AgentScopeSettings.model_validate({**base_settings, **{k: v for k, v in given.items() if v is not None}})
    written = [n for c in record.clients if c.kind == "agentscope" for n in c.names]
    rendered = client_formats.render(
        cast("client_formats.Format", fmt),
        record.endpoints_for_clients(),
        settings,
        deployment=record.name,
        base=config_name or client_formats.entry_base(record.name, written),
        only=endpoint,
    )
    if record.status != "ready":
        click.secho(f"note: deployment {name!r} is {record.status}, not ready yet", fg="yellow", err=True)
    for note in rendered.notes:
        click.secho(f"note: {note}", fg="yellow", err=True)
    if write_path is None:
        click.echo(rendered.text, nl=False)  # the text ends with its own newline
    else:
        click.echo(write(rendered, write_path))
        _remember(record, rendered, write_path)


def _remember(record: state.DeploymentRecord, rendered: RenderedConfig, path: Path) -> None:
    """Merged entries are recorded, so `down --forget-config` removes them as it does up's."""

    if rendered.write_mode == "merge-list":
        names, kind = [e["config_name"] for e in rendered.entries], "agentscope"
    elif rendered.write_mode == "merge-object":
        names, kind = list(rendered.named), "agentfabric"
    else:
        return
    target = str(path.expanduser().absolute())
    kept = [c for c in record.clients if not (c.kind == kind and c.path == target)]
    record.clients = [*kept, state.ClientRecord(kind, target, names)]
    state.save(record)


def write(rendered: RenderedConfig, path: Path) -> str:
    """Merge or create ``path``; returns what was done, for the user."""
    from launcher import clients
    from launcher.errors import ClientConfigError

    path = path.expanduser().absolute()
    if not path.parent.is_dir():
        raise ClientConfigError(f"the folder {path.parent} does not exist", "create it or choose another --write path")
    if rendered.write_mode == "merge-list":
        merged = clients.merge(path, rendered.entries, option="--write")
        names = [e["config_name"] for e in rendered.entries]
        return f"merged {', '.join(names)} into {path} ({len(merged) - len(names)} other entries kept)"
    if rendered.write_mode == "merge-object":
        merged_named = clients.merge_object(path, rendered.named)
        kept = len(merged_named) - len(rendered.named)
        return f"merged {', '.join(rendered.named)} into {path} ({kept} other entries kept)"
    # A key in a new file is readable by its owner only (merged files keep their mode, as `up` does).
    if clients.write_new(path, rendered.text, mode=0o600 if rendered.holds_secret else 0o644):
        return f"wrote {path}"
    return f"{path} already holds this config; left as is"
