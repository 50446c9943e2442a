"""A Ray cluster's nodes and GPUs, read from the live cluster, and whether a layout fits them.

The launcher never imports ray. A short script runs in the interpreter that has it (the
engine's), joins the cluster as a driver (``ray.init(address=...)``: it starts no Ray process of
its own), prints ``ray.nodes()`` as one JSON line and disconnects; at the deadline it is killed
and the last lines it printed go into the error.

A layout is ``gpus_per_node`` GPUs of one node per tensor-parallel group, ``nodes`` groups (the
pipeline stages): vLLM keeps a tensor-parallel group on one node because its all-reduce runs at
every layer, while pipeline stages exchange one activation per step. So a cluster fits when its
alive nodes hold ``nodes`` such groups; one node with 8 GPUs holds two groups of 4.
Ray reports GPU counts, not GPU memory: the memory estimate cannot be checked per node here.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from launcher.core.errors import BackendUnavailable, DeviceError
from launcher.devices.memory_fit import FitVerdict
from launcher.process.childio import run_streaming

MARK = "MODELSERVE-RAY "
# Runs in the interpreter that has ray. address "auto": the cluster this machine joined (never
# None, which would start a new local cluster).
PROBE = r"""
import json, sys
try:
    import ray
except ImportError as exc:
    print("MODELSERVE-RAY-MISSING " + str(exc)); sys.exit(3)
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
nodes = [{"id": n["NodeID"], "ip": n["NodeManagerAddress"], "alive": bool(n["Alive"]),
          "resources": n.get("Resources") or {}} for n in ray.nodes()]
here = ray.get_runtime_context().get_node_id()
print("MODELSERVE-RAY " + json.dumps({"version": ray.__version__, "driver_node": here, "nodes": nodes}))
ray.shutdown()
"""


@dataclass(frozen=True)
class RayNode:
    node_id: str
    ip: str
    alive: bool
    gpus: int
    cpus: float
    accelerator: str | None = None  # Ray's accelerator_type resource (H100, A10G, ...), when it has one

    def describe(self) -> str:
        kind = f" {self.accelerator}" if self.accelerator else ""
        return f"{self.ip}: {self.gpus}{kind} GPU{'s' if self.gpus != 1 else ''}"


@dataclass(frozen=True)
class RayCluster:
    """What the cluster said about itself."""

    address: str
    version: str
    nodes: tuple[RayNode, ...]
    driver_node: str | None = None  # the node the probe ran on (where `up` starts vLLM)

    @property
    def alive(self) -> tuple[RayNode, ...]:
        return tuple(n for n in self.nodes if n.alive)

    @property
    def gpus(self) -> int:
        return sum(n.gpus for n in self.alive)

    def describe(self) -> str:
        alive = self.alive
        each = ", ".join(n.describe() for n in alive)
        dead = len(self.nodes) - len(alive)
        text = f"{len(alive)} node{'s' if len(alive) != 1 else ''} alive ({each}; {self.gpus} GPUs in all)"
        return text + (f", {dead} dead" if dead else "")


def parse_nodes(data: Mapping[str, Any], address: str) -> RayCluster:
    """The probe's JSON (``ray.nodes()`` trimmed to what is used) -> RayCluster."""
    nodes = []
    for raw in data.get("nodes", []):
        res = raw.get("resources") or {}
        accel = next((k.split(":", 1)[1] for k in res if k.startswith("accelerator_type:")), None)
        nodes.append(RayNode(str(raw["id"]), str(raw["ip"]), bool(raw["alive"]), int(res.get("GPU", 0)),
                             float(res.get("CPU", 0)), accel))  # fmt: skip
    return RayCluster(address, str(data.get("version", "?")), tuple(nodes), data.get("driver_node"))


def inspect_cluster(python: str, address: str, *, timeout: float = 60.0,
                    env: Mapping[str, str] | None = None) -> RayCluster:  # fmt: skip
    """Join the cluster at ``address`` ("auto": the one this machine joined) with ``python``'s
    ray, read its nodes, leave. Raises BackendUnavailable without ray, DeviceError otherwise."""
    refused = _unreachable(address)
    if refused:
        raise DeviceError(f"cannot reach the Ray cluster at {address}: {refused}",
                          "start its head first (`modelserve ray head -c FILE --start`), or fix ray.address")  # fmt: skip
    child_env = dict(os.environ if env is None else env)
    child_env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Without it a driver waits two minutes for a GCS that went away after the check above.
    child_env.setdefault("RAY_gcs_rpc_server_reconnect_timeout_s", "10")
    result = run_streaming([python, "-c", PROBE, address], timeout=timeout, env=child_env, keep=60)
    found = next((line[len(MARK):] for line in result.tail if line.startswith(MARK)), None)
    if found is not None and result.returncode == 0:
        return parse_nodes(json.loads(found), address)
    if any(line.startswith("MODELSERVE-RAY-MISSING") for line in result.tail):
        raise BackendUnavailable(f"ray is not installed in {python}, which runs the engine",
                                 f"`{python} -m pip install ray` (the managed CUDA env has it: "
                                 "`modelserve env create vllm --recreate`), or set python: to one that has it")  # fmt: skip
    last = _last_error(result.tail)
    if result.timed_out:
        raise DeviceError(f"the Ray cluster at {address} did not answer within {timeout:.0f} s ({last})",
                          "check that its head runs (`ray status` there) and that ray.address is right")  # fmt: skip
    raise DeviceError(f"cannot read the Ray cluster at {address}: {last}",
                      "start its head first (`modelserve ray head -c FILE --start`), or fix ray.address")  # fmt: skip


def _unreachable(address: str, timeout: float = 3.0) -> str | None:
    """Why nothing answers on the head's GCS port (None: it accepts a connection, or "auto")."""
    if address == "auto":
        return None
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__


def _last_error(tail: tuple[str, ...]) -> str:
    lines = [line.strip() for line in tail if line.strip()]
    errors = [line for line in lines if "Error" in line or "error" in line]
    return (errors or lines or ["no output"])[-1][:400]


def check_cluster_fit(cluster: RayCluster, *, nodes: int, gpus_per_node: int,
                      driver_needs_gpu: bool = False) -> FitVerdict:  # fmt: skip
    """Do the cluster's alive nodes hold ``nodes`` groups of ``gpus_per_node`` GPUs (each group on
    one node)? ``driver_needs_gpu``: the node the probe ran on (where `up` starts vLLM) must give
    the cluster a GPU too. The verdict says the numbers either way, and the fixes when not."""
    groups = sum(n.gpus // gpus_per_node for n in cluster.alive)
    need = (f"tensor parallel {gpus_per_node} x pipeline parallel {nodes} needs {nodes} group"
            f"{'s' if nodes != 1 else ''} of {gpus_per_node} GPUs, each group on one node ({nodes * gpus_per_node} GPUs)")  # fmt: skip
    where = f"the Ray cluster at {cluster.address} (ray {cluster.version}) has {cluster.describe()}"
    if groups >= nodes and driver_needs_gpu:
        return _driver_verdict(cluster, f"{need}; {where}")
    if groups >= nodes:
        return FitVerdict(True, f"{need}; {where}: fits")
    missing = nodes - groups
    fixes = [f"`modelserve ray worker -c FILE --start` on {missing} more node{'s' if missing != 1 else ''} with "
             f"{gpus_per_node} GPUs"]  # fmt: skip
    smaller = next((g for g in range(gpus_per_node - 1, 0, -1)
                    if sum(n.gpus // g for n in cluster.alive) >= nodes), None)  # fmt: skip
    if smaller is not None:
        fixes.append(f"gpus: {smaller} (tensor parallel {smaller} per node, if it divides the model's heads)")
    if groups >= 1:
        fixes.append(f"ray.nodes: {groups} (fewer pipeline stages: more memory per GPU)")
    fixes.append("--force to start anyway")
    room = f"room for {groups} group{'s' if groups != 1 else ''} of {gpus_per_node}"
    return FitVerdict(False, f"{need}, but {where}: {room}", "try " + "; ".join(fixes))


def _driver_verdict(cluster: RayCluster, numbers: str) -> FitVerdict:
    """vLLM's legacy Ray executor (VLLM_USE_RAY_V2_EXECUTOR_BACKEND=0) refuses to start on a node
    that gives the cluster no GPU ("Current node has no GPU available"): it pins its first worker
    beside the server. RayExecutorV2, the default since vLLM 0.32, places every worker remotely."""
    here = next((n for n in cluster.alive if n.node_id == cluster.driver_node), None)
    if here is None or here.gpus > 0:
        return FitVerdict(True, f"{numbers}: fits")
    return FitVerdict(False, f"{numbers}, but this machine ({here.ip}) gives the cluster no GPU, and vLLM's legacy "
                             "Ray executor (VLLM_USE_RAY_V2_EXECUTOR_BACKEND=0) starts its first worker beside the server",
                      "run `modelserve up` on a GPU node of the cluster, or drop VLLM_USE_RAY_V2_EXECUTOR_BACKEND=0 "
                      "(RayExecutorV2 places every worker remotely)")  # fmt: skip
