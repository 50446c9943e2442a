"""Text and JSON renderings of command results (pure functions; the CLI prints them)."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from launcher.core.probe import Probe, to_dict

if TYPE_CHECKING:
    from launcher.core.deployment_spec import LoadedSpec
    from launcher.core.launch import LaunchPlan
    from launcher.lifecycle.down import DownResult
    from launcher.lifecycle.fleet import FleetUpResult
    from launcher.lifecycle.fleet_plan import FleetDryRun
    from launcher.lifecycle.listing import BackendRow
    from launcher.lifecycle.prepare import Prepared
    from launcher.lifecycle.status import Status
    from launcher.lifecycle.up import UpResult


def up_text(result: UpResult) -> str:
    rec = result.record
    width = max(len(k) for k in rec.endpoints) if rec.endpoints else 0
    endpoints = [f"{k.ljust(width)}  {v}" for k, v in rec.endpoints.items()]
    lines = [
        f"ready: {rec.name} answered after {result.ready_seconds:.1f} s",
        f"  backend:    {result.backend_reason}",
        f"  model:      {rec.model}  ({result.model_description})",
        f"  served as:  {rec.served_model_name}",
        *([f"  task:       {rec.task}"] if rec.task not in (None, "generate") else []),
        "  endpoints:  " + ("\n              ".join(endpoints) if endpoints else "-"),
    ]
    if rec.tools:
        lines.append(f"  tools:      {rec.tools}")
    if rec.surfaces:
        lines.append(f"  surfaces:   {surfaces_line(rec.surfaces)}")
    if result.config_path:
        lines.append(f"  agentscope: {result.config_path}  (config_name: {', '.join(result.config_names)})")
    for note in rec.notes:
        lines.append(f"  note:       {note}")
    lines += [
        f"  pid:        {rec.pid}",
        f"  log:        {rec.main_log}",
        f"  stop:       modelserve down {rec.name}",
    ]
    return "\n".join(lines)


def surfaces_line(surfaces: Mapping[str, str]) -> str:
    """``Anthropic Messages native, OpenAI Responses translated (front)``."""
    names = {"messages": "Anthropic Messages", "responses": "OpenAI Responses"}
    how = {"native": "native", "translated": "translated (front)", "no": "not served"}
    return ", ".join(f"{title} {how.get(surfaces.get(key, 'no'), '?')}" for key, title in names.items())


def up_json(result: UpResult) -> dict[str, Any]:
    rec = asdict(result.record)
    rec.pop("api_key", None)
    return {
        "version": 1,
        "deployment": rec,
        "backend_reason": result.backend_reason,
        "model": result.model_description,
        "ready_seconds": round(result.ready_seconds, 2),
        "agentscope_config": result.config_path,
        "config_names": result.config_names,
        "warnings": result.warnings,
    }


def fleet_up_text(result: FleetUpResult) -> str:
    rec, fleet = result.record, result.fleet
    lines = [f"ready: fleet {rec.name} answered after {result.ready_seconds:.1f} s on {rec.base_url}/v1"]
    for m in fleet.members:
        dep = m.spec.deployment
        state = "loaded" if m.name in result.preloaded else "starts on first request"
        lines.append(f"  {m.name:<12} model {m.model_id!r} ({dep.model}, backend {dep.backend}): {state}")
    policy = fleet.policy
    lines.append(f"  policy:     max_loaded {policy.max_loaded or 'no limit'}, idle_ttl "
                 f"{f'{policy.idle_ttl:g} s' if policy.idle_ttl else 'never'}")  # fmt: skip
    if result.config_path:
        lines.append(f"  agentscope: {result.config_path}  (config_name: {', '.join(result.config_names)})")
    lines += [f"  metrics:    {rec.base_url}/metrics", f"  log:        {rec.main_log}",
              f"  stop:       modelserve down {rec.name}"]  # fmt: skip
    return "\n".join(lines)


def fleet_up_json(result: FleetUpResult) -> dict[str, Any]:
    rec = asdict(result.record)
    rec.pop("api_key", None)
    return {
        "version": 1,
        "deployment": rec,
        "fleet": {"members": [{"name": m.name, "model": m.model_id, "loaded": m.name in result.preloaded}
                              for m in result.fleet.members]},  # fmt: skip
        "ready_seconds": round(result.ready_seconds, 2),
        "agentscope_config": result.config_path,
        "config_names": result.config_names,
        "warnings": result.warnings,
    }


def down_text(results: list[DownResult]) -> str:
    if not results:
        return "no deployments"
    lines = []
    for r in results:
        rep = r.report
        if r.external:
            how = "left running (modelserve did not start it)"
        elif rep.already_gone:
            how = "was not running; record removed"
        elif rep.killed:
            how = f"stopped in {rep.seconds:.1f} s (SIGKILL needed for {len(rep.killed)} process(es))"
        else:
            how = f"stopped in {rep.seconds:.1f} s"
        if r.forgot:
            how += f"; removed {r.forgot} agent config entr{'y' if r.forgot == 1 else 'ies'}"
        lines.append(f"{r.name}: {how}")
    return "\n".join(lines)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def status_text(rows: list[Status]) -> str:
    if not rows:
        return "no deployments (start one with `modelserve up -m MODEL`)"
    header = ["NAME", "BACKEND", "MODEL", "ENDPOINT", "PID", "UPTIME", "STATE", "RESTARTS", "HEALTH", "LOG"]
    table = [header] + [
        [r.name, r.backend, r.model, r.endpoint, str(r.pid or "-"), _duration(r.uptime_s), r.state,
         str(r.restarts) if r.mode == "foreground" else "-",
         r.health if len(r.health) < 60 else r.health[:57] + "...", r.log]  # fmt: skip
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
             for row in table]  # fmt: skip
    lines += [f"{r.name}: last exit: {r.last_exit}" for r in rows if r.last_exit]
    for r in rows:
        for m in r.members:
            lines.append(f"{r.name}: {m['name']} ({m['model']}) {_member_state(m)}")
    return "\n".join(lines)


def _member_state(m: dict[str, Any]) -> str:
    if m["state"] == "ready":
        what = "loaded, " + (f"idle for {_duration(m['idle_seconds'])}" if m["idle_seconds"] is not None
                             else f"{m['in_flight']} in flight, {m['waiting']} waiting")  # fmt: skip
    else:
        what = str(m["state"])
    what += f", {m['requests']} requests, {m['loads']} loads, {m['errors']} errors"
    return what + (f"; last error: {m['last_error']}" if m["last_error"] else "")


MATRIX = (("OPENAI", "openai"), ("/llm/", "post"), ("OLLAMA", "ollama"), ("STREAM", "streaming"),
          ("TOOLS", "tools"), ("JSON", "structured-output"), ("EMBED", "embed"), ("RERANK", "rerank"))  # fmt: skip
SURFACE_COLUMNS = (("MESSAGES", "messages"), ("RESPONSES", "responses"))
SURFACES_LEGEND = ("MESSAGES (Anthropic) and RESPONSES (OpenAI): native = the engine's own route;\n"
                   "  translated = modelserve's front translates it to the engine's Chat Completions")  # fmt: skip


def backends_text(rows: list[BackendRow]) -> str:
    """A capability matrix (what each backend serves, whether it runs here), then why not."""
    header = ["BACKEND", "HERE", "DEVICES", *(title for title, _ in MATRIX), *(t for t, _ in SURFACE_COLUMNS), "FROM"]
    table = [header]
    for r in rows:
        where = "/".join(k for k, on in (("cpu", r.cpu), ("gpu", r.gpu)) if on) or "-"
        marks = ["yes" if name in r.capabilities else "-" for _, name in MATRIX]
        how = [r.surfaces.get(name, "no").replace("no", "-") for _, name in SURFACE_COLUMNS]
        table.append([r.name, "yes" if r.available else "no", where, *marks, *how, r.distribution])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table]
    lines += [SURFACES_LEGEND, ""]
    for r in rows:
        detail = f"{r.version}" if r.available and r.version else ("" if r.available else f"not here: {r.reason}")
        lines.append(f"{r.name}: {r.summary}" + (f" ({detail})" if detail else ""))
        lines += [f"  no {why}" for why in r.refusals]
    return "\n".join(lines)


def plan_text(loaded: LoadedSpec, prep: Prepared) -> str:
    dep, choice, plan = loaded.deployment, prep.choice, prep.launch
    where, why = choice.devices.describe(), choice.devices.reason
    lines = [
        f"deployment {dep.deployment_name}: {choice.reason}",
        f"  devices: {where}" + (f" ({why})" if why != where else ""),
        f"  model: {prep.model.description}",
        f"  served as: {plan.served_model_name}",
        f"  task: {choice.task} ({choice.task_reason})",
        f"  engine python: {prep.python}",
    ]
    if prep.fit is not None:
        label = "cluster" if dep.ray is not None else "memory"  # Ray counts GPUs, not their memory
        lines.append(f"  {label}: {prep.fit.message}" + (f" ({prep.fit.hint})" if prep.fit.hint else ""))
    defaults = [k for k, src in loaded.sources.items() if "defaults.yaml" in src]
    for key in sorted(k for k in loaded.sources if k not in defaults):
        lines.append(f"  {key} from {loaded.sources[key]}")
    if defaults:
        lines.append(f"  other values from {loaded.source(defaults[0]).rsplit(':', 1)[0]}")
    for proc in plan.processes:
        lines.append(f"process {proc.role}:")
        lines.append("  argv: " + shlex.join(proc.argv))
        for k, v in sorted(proc.env.items()):
            lines.append(f"  env:  {k}={'***' if k in proc.secret_env else v}")
        for probe in proc.ready:
            lines.append(f"  ready when: {probe.describe()}")
    for probe in plan.final_probes:
        lines.append(f"then ready when: {probe.describe()}")
    for key, value in plan.engine.items():
        lines.append(f"engine {key}: {value}")
    if plan.tools:
        lines.append(f"tools: {plan.tools}")
    if plan.surfaces:
        lines.append(f"surfaces: {surfaces_line({str(k): v for k, v in plan.surfaces.items()})}")
    for note in plan.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def plan_json(loaded: LoadedSpec, prep: Prepared) -> dict[str, Any]:
    """What plan_text shows, as data (`up --dry-run --json`); secrets masked."""
    dep, choice, plan = loaded.deployment, prep.choice, prep.launch
    return {
        "deployment": dep.deployment_name,
        "backend": choice.backend.name,
        "backend_reason": choice.reason,
        "devices": choice.devices.describe(),
        "model": prep.model.description,
        "served_model_name": plan.served_model_name,
        "engine_python": prep.python,
        "fit": None if prep.fit is None else {"fits": prep.fit.fits, "message": prep.fit.message},
        "sources": dict(sorted(loaded.sources.items())),
        "processes": [{"role": p.role, "argv": list(p.argv),
                       "env": {k: "***" if k in p.secret_env else v for k, v in sorted(p.env.items())},
                       "ready_when": [probe.describe() for probe in p.ready]} for p in plan.processes],  # fmt: skip
        "then_ready_when": [probe.describe() for probe in plan.final_probes],
        "endpoints": dict(plan.endpoints),
        "engine": dict(plan.engine),
        "tools": plan.tools,
        "notes": list(plan.notes),
    }


def fleet_plan_text(run: FleetDryRun) -> str:
    """`up -c FLEET.yaml --dry-run`: the gateway's plan, then each member's as its start makes it."""
    fleet, plan = run.fleet, run.plan
    policy = plan.policy
    lines = [
        f"fleet {fleet.name}: gateway on {run.base_url}/v1, "
        f"{len(run.members)} member(s); a dry run: nothing started, nothing written",
        f"  policy: max_loaded {policy.max_loaded or 'no limit'}, idle_ttl "
        f"{f'{policy.idle_ttl:g} s' if policy.idle_ttl else 'never'}, start_timeout {policy.start_timeout:g} s",
        f"  api key: {'gateway.api_key (every route but /health)' if plan.api_key else 'none'}",
        f"  agentscope: {run.config_path}  (config_name: {', '.join(run.config_names)})" if run.config_path
        else "  agentscope: none (agentscope.config is null)",
        "process gateway:",
        "  argv: " + shlex.join(run.gateway_argv),
        f"  ready when: {run.gateway_probe.describe()}",
    ]  # fmt: skip
    for member, d in zip(plan.members, run.members, strict=True):
        when = "loaded by `up` (preload)" if member.preload else "started on its first request"
        port = "its port from the fleet file" if d.port_fixed else "a free loopback port at each start (one shown below)"
        lines += [f"member {member.name}: model id {member.model_id!r}, {when}; {port}",
                  "  start: " + shlex.join(member.start_argv) + " --port PORT",
                  "  stop:  " + shlex.join(member.stop_argv),
                  plan_text(d.loaded, d.prep)]  # fmt: skip
    return "\n".join(lines)


def fleet_plan_json(run: FleetDryRun) -> dict[str, Any]:
    plan = run.plan
    return {
        "version": 1,
        "dry_run": True,
        "fleet": run.fleet.name,
        "gateway": {"host": plan.host, "port": plan.port, "api_key": bool(plan.api_key), "argv": list(run.gateway_argv),
                    "ready_when": run.gateway_probe.describe(), "policy": plan.policy.model_dump()},  # fmt: skip
        "members": [{"name": m.name, "deployment": m.deployment, "model": m.model_id, "preload": m.preload,
                     "port": m.port, "start_argv": [*m.start_argv, "--port", "PORT"], "stop_argv": m.stop_argv,
                     "plan": plan_json(d.loaded, d.prep)}
                    for m, d in zip(plan.members, run.members, strict=True)],  # fmt: skip
        "agentscope_config": run.config_path,
        "config_names": run.config_names,
        "warnings": run.warnings,
    }


def launch_plan_text(plan: LaunchPlan) -> str:
    """Every decision in a LaunchPlan, one per line, secrets masked (golden files use this)."""
    lines = [f"backend: {plan.backend}", f"api: {plan.api}", f"served_model_name: {plan.served_model_name}"]
    for proc in plan.processes:
        lines.append(f"process {proc.role}:")
        lines += [f"  argv: {arg}" for arg in proc.argv]
        lines += [f"  env: {k}={'***' if k in proc.secret_env else v}" for k, v in sorted(proc.env.items())]
        if proc.cwd:
            lines.append(f"  cwd: {proc.cwd}")
        lines += [f"  ready: {_probe_line(p)}" for p in proc.ready]
    lines += [f"final: {_probe_line(p)}" for p in plan.final_probes]
    lines += [f"engine {k}: {v}" for k, v in plan.engine.items()]
    lines += [f"endpoint {k}: {v}" for k, v in plan.endpoints.items()]
    lines += [f"client {c.kind}: {c.url} model={c.model_name} key={'***' if c.api_key else None}" for c in plan.clients]
    if plan.tools:
        lines.append(f"tools: {plan.tools}")
    lines += [f"surface {name}: {how}" for name, how in plan.surfaces.items()]
    lines += [f"note: {n}" for n in plan.notes]
    if plan.external:
        lines.append("external: true")
    return "\n".join(lines) + "\n"


def _probe_line(probe: Probe) -> str:
    """``ClassName field=value ...`` with the API key masked."""
    fields = to_dict(probe)
    kind = str(fields.pop("type")).rpartition(":")[2]
    if fields.get("api_key"):
        fields["api_key"] = "***"
    return " ".join([kind, *(f"{k}={v}" for k, v in fields.items())])
