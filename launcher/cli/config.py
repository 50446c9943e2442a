"""``modelserve config NAME --format F [--write PATH]``: a running deployment's agent client
config, printed or merged into a file."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import click

from launcher.agents.format_names import ENDPOINTS, FORMATS, Format
from launcher.cli.root import main

WRITE_HELP = ("Merge into this file instead of printing (agentscope, agentfabric: by entry name, atomically, "
              "keeping other entries); other formats are written only to a new file.")  # fmt: skip


@main.command("config")
@click.argument("name")
@click.option("-f", "--format", "fmt", required=True, type=click.Choice(FORMATS), help="Which client to configure.")
@click.option("-w", "--write", "write_path", type=click.Path(dir_okay=False, path_type=Path), help=WRITE_HELP)
@click.option("--endpoint", type=click.Choice(list(ENDPOINTS)), help="Only this endpoint: post (/llm/ or "
              "/v1/embeddings), openai (/v1), ollama (native API), rerank [every one the format can express].")  # fmt: skip
@click.option("--config-name", help="Entry name prefix (agentscope, agentfabric) [the one `up` used].")
@click.option("--member", help="A fleet's member, by the model id clients send [its first].")
@click.option("--max-tokens", type=click.IntRange(min=1), help="Max new tokens per reply [512].")
@click.option("--temperature", type=click.FloatRange(0, 2), help="Sampling temperature; 0 is greedy [0.7].")
@click.option("--request-timeout", type=click.FloatRange(0, min_open=True), help="Client read timeout, s [300].")
@click.option("--k8s", is_flag=True, help="The deployment `modelserve k8s render` recorded (its Services' URLs), "
              "even when one of that name runs here [used when none runs here].")  # fmt: skip
def config_command(name: str, fmt: str, write_path: Path | None, endpoint: str | None, config_name: str | None,
                   member: str | None, max_tokens: int | None, temperature: float | None,
                   request_timeout: float | None, k8s: bool) -> None:  # fmt: skip
    """Print (or --write) the config an agent client needs to use deployment NAME.

    \b
    modelserve config smollm2-135m -f agentscope --write ./model_config.json
    modelserve config smollm2-135m -f modelscope-agent
    modelserve config smollm2-135m -f agentfabric --write apps/agentfabric/config/model_config.json
    modelserve config smollm2-135m -f agentscope-v1 --temperature 0 > model.py
    modelserve config smollm2-135m -f agentscope-v2 --write model_v2.py
    set -a; eval "$(modelserve config smollm2-135m -f openai-env)"; set +a
    modelserve config llama2 --k8s -f openai-env     # after `modelserve k8s render -c llama2.yaml`
    """
    from launcher.lifecycle import clients
    from launcher.store.k8s_records import RENDERED

    record, found = clients.find_record(name, k8s=k8s)
    rendered = clients.config_for(record, cast(Format, fmt), only=endpoint, config_name=config_name, member=member,
                                  max_tokens=max_tokens, temperature=temperature, request_timeout=request_timeout)  # fmt: skip
    if record.status not in ("ready", RENDERED):
        click.secho(f"note: deployment {name!r} is {record.status}, not ready yet", fg="yellow", err=True)
    for note in (*found, *rendered.notes):
        click.secho(f"note: {note}", fg="yellow", err=True)
    if write_path is None:
        click.echo(rendered.text, nl=False)  # the text ends with its own newline
    else:
        click.echo(clients.write(record, rendered, write_path))
