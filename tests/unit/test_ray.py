"""vLLM across a Ray cluster: the plan (tensor parallel per node x pipeline parallel across nodes),
the pre-flight verdict on what real Ray clusters reported (tests/fixtures/ray, recorded), the
choice of backend, the spec section, and the `ray start` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from launcher import cli, devices
from launcher.core.deployment import Deployment, RaySettings
from launcher.core.errors import ConfigError
from launcher.devices.ray_inventory import RayCluster, check_cluster_fit, parse_nodes
from launcher.lifecycle import ray_cluster, specs
from launcher.lifecycle.choose import Engines, choose
from tests.golden import assert_golden
from tests.unit.plans import REMOTE, render
from tests.unit.test_plan_vllm import VLLM_CUDA

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ray"
HEAD = "10.0.0.1:6379"


def recorded(name: str) -> RayCluster:
    return parse_nodes(json.loads((FIXTURES / f"{name}.json").read_text()), HEAD)


def on_ray(nodes: int, gpus: int, address: str | None = HEAD, **kw: object) -> Deployment:
    return Deployment(model=REMOTE.reference, gpus=gpus, ray=RaySettings(address=address, nodes=nodes), **kw)  # type: ignore[arg-type]


def ray_plan(dep: Deployment) -> tuple[tuple[str, ...], dict[str, str], str]:
    choice = choose(dep, Engines())
    plan, text = render("vllm", dep, REMOTE, choice.devices, engine=VLLM_CUDA)
    return plan.processes[0].argv, dict(plan.processes[0].env), text


def flag(argv: tuple[str, ...], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def test_two_nodes_of_four_gpus() -> None:
    argv, env, text = ray_plan(on_ray(2, 4, port=8080))
    assert_golden("plans/vllm/ray-2x4.txt", text)
    assert (flag(argv, "--tensor-parallel-size"), flag(argv, "--pipeline-parallel-size")) == ("4", "2")
    assert flag(argv, "--distributed-executor-backend") == "ray"
    assert env["RAY_ADDRESS"] == HEAD
    assert "CUDA_VISIBLE_DEVICES" not in env  # Ray sets each worker's own


@pytest.mark.parametrize(("nodes", "gpus", "tp", "pp"), [(1, 8, "8", None), (2, 4, "4", "2"), (4, 2, "2", "4"),
                                                         (8, 1, "1", "8")])  # fmt: skip
def test_tensor_parallel_within_a_node_pipeline_parallel_across(nodes: int, gpus: int, tp: str, pp: str | None) -> None:
    argv, _, _ = ray_plan(on_ray(nodes, gpus))
    assert (flag(argv, "--tensor-parallel-size"), flag(argv, "--pipeline-parallel-size")) == (tp, pp)


def test_four_nodes_of_two_gpus_with_a_key_on_the_cluster_this_machine_joined() -> None:
    dep = on_ray(4, 2, address=None, api_key="s3cret", host="0.0.0.0",
                 options={"vllm": {"gpu_memory_utilization": 0.8}}, backend_args={"max-num-seqs": 32})  # fmt: skip
    argv, env, text = ray_plan(dep)
    assert_golden("plans/vllm/ray-4x2-key-auto.txt", text)
    assert "RAY_ADDRESS" not in env  # vLLM's ray.init() finds the cluster `ray start` left on this node
    assert "s3cret" not in " ".join(argv) and env["VLLM_API_KEY"] == "s3cret"


def test_too_small_a_cluster_names_its_numbers_and_the_fixes() -> None:
    one = check_cluster_fit(recorded("one-node-4gpu"), nodes=2, gpus_per_node=4)
    uneven = check_cluster_fit(recorded("two-nodes-4-2gpu"), nodes=2, gpus_per_node=4)
    dead = check_cluster_fit(recorded("two-nodes-one-dead"), nodes=2, gpus_per_node=4)
    cpu_head = check_cluster_fit(recorded("cpu-head-two-4gpu-workers"), nodes=2, gpus_per_node=4,
                                 driver_needs_gpu=True)  # fmt: skip
    assert not (one.fits or uneven.fits or dead.fits or cpu_head.fits)
    text = "\n\n".join(f"{name}:\n{v.message}\nfix: {v.hint}" for name, v in
                       [("one node of 4", one), ("nodes of 4 and 2", uneven), ("one dead", dead),
                        ("cpu head, legacy Ray executor", cpu_head)])  # fmt: skip
    assert_golden("ray/too-small.txt", text + "\n")


@pytest.mark.parametrize(("fixture", "nodes", "gpus", "fits"), [
    ("two-nodes-4-4gpu", 2, 4, True),
    ("one-node-4gpu", 2, 2, True),  # two groups of 2 on one node
    ("one-node-4gpu", 1, 4, True),
    ("one-node-4gpu", 1, 8, False),
    ("two-nodes-4-2gpu", 2, 2, True),
    ("two-nodes-4-2gpu", 3, 2, True),  # 4 -> two groups, 2 -> one
    ("two-nodes-4-2gpu", 4, 2, False),
    ("two-nodes-one-dead", 1, 4, True),
    ("cpu-head-two-4gpu-workers", 2, 4, True),  # RayExecutorV2 (vLLM's default) needs no GPU beside the server
])  # fmt: skip
def test_fit_counts_groups_of_gpus_on_alive_nodes(fixture: str, nodes: int, gpus: int, fits: bool) -> None:
    verdict = check_cluster_fit(recorded(fixture), nodes=nodes, gpus_per_node=gpus)
    assert verdict.fits is fits, verdict.message


def test_recorded_clusters_parse_to_their_nodes() -> None:
    dead = recorded("two-nodes-one-dead")
    assert [(n.alive, n.gpus) for n in dead.nodes] == [(True, 4), (False, 0)]
    assert dead.gpus == 4 and dead.describe().endswith(", 1 dead")
    cpu_head = recorded("cpu-head-two-4gpu-workers")
    driver = next(n for n in cpu_head.nodes if n.node_id == cpu_head.driver_node)
    assert (driver.gpus, cpu_head.gpus, cpu_head.version) == (0, 8, "2.60.0")


def test_ray_picks_vllm_and_refuses_a_one_machine_backend() -> None:
    choice = choose(on_ray(2, 4), Engines())
    assert choice.backend.name == "vllm" and "runs across nodes" in choice.reason
    assert choice.devices.describe() == f"Ray cluster {HEAD}: 2 node(s) x 4 GPU(s)"
    with pytest.raises(ConfigError, match="backend flask-transformers runs on one machine; only vllm"):
        choose(on_ray(2, 4, backend="flask-transformers"), Engines())
    with pytest.raises(ConfigError, match="device: cuda:0,1 picks this machine's devices"):
        choose(on_ray(2, 4, device="cuda:0,1"), Engines())


def test_the_ray_section_is_checked_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("model: m\ngpus: 4\nray:\n  address: 10.0.0.1:6379\n  nodes: 2\n")
    dep = specs.load(path).deployment
    assert dep.ray == RaySettings(address="10.0.0.1:6379", nodes=2) and dep.ray.port == 6379
    path.write_text("model: m\nray:\n  address: 10.0.0.1\n  node: 2\n")
    with pytest.raises(ConfigError) as err:
        specs.load(path)
    assert f"{path}:3 ray.address: Value error, expected HOST:PORT of the Ray head" in str(err.value)
    assert f"{path}:4 ray.node: unknown key (did you mean 'nodes'?)" in str(err.value)


def test_ray_start_commands() -> None:
    dep = on_ray(2, 4, address="10.0.0.1:6380", env={"NCCL_SOCKET_IFNAME": "eth0"})
    found = ray_cluster.commands(dep, "/envs/vllm/bin/ray")
    auto = ray_cluster.commands(on_ray(2, 4, address=None), "/envs/vllm/bin/ray")
    text = "\n".join(f"{role}: {c.text()}" for role, c in [*found.items(), ("worker, no address", auto["worker"])])
    assert_golden("ray/commands.txt", text + "\n")


def test_ray_cli_prints_the_commands_of_the_engines_interpreter(tmp_path: Path) -> None:
    bin_dir = tmp_path / "env" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "ray").write_text("#!/bin/sh\n")
    spec = tmp_path / "big.yaml"
    spec.write_text(f"model: m\ngpus: 4\npython: {bin_dir / 'python'}\nray: {{address: '10.0.0.1:6379', nodes: 2}}\n")
    head = CliRunner().invoke(cli.main, ["ray", "head", "-c", str(spec)])
    worker = CliRunner().invoke(cli.main, ["ray", "worker", "-c", str(spec)])
    assert (head.exit_code, worker.exit_code) == (0, 0), head.output + worker.output
    assert head.output == f"{bin_dir / 'ray'} start --head --port=6379 --num-gpus=4 --disable-usage-stats\n"
    assert worker.output == f"{bin_dir / 'ray'} start --address=10.0.0.1:6379 --num-gpus=4\n"
    spec.write_text(f"model: m\ngpus: 4\npython: {bin_dir / 'python'}\nray: {{nodes: 2}}\n")
    no_head = CliRunner().invoke(cli.main, ["ray", "worker", "-c", str(spec)])
    assert no_head.exit_code == 3 and "ray.address: a worker joins the head at HOST:PORT" in no_head.output
    (bin_dir / "ray").unlink()
    missing = CliRunner().invoke(cli.main, ["ray", "head", "-c", str(spec), "--start"])
    assert missing.exit_code == 5 and f"ray is not installed beside {bin_dir / 'python'}" in missing.output
    shown = CliRunner().invoke(cli.main, ["ray", "head", "-c", str(spec)])  # printing: ray from PATH, with a warning
    assert shown.exit_code == 0 and "ray start --head --port=6379 --num-gpus=4 --disable-usage-stats\n" in shown.output
    assert f"warning: ray is not installed beside {bin_dir / 'python'}" in shown.output


def test_a_device_plan_on_ray_describes_the_cluster() -> None:
    plan = devices.DevicePlan("cuda", (), "Ray cluster auto: 1 node(s) x 8 GPU(s)")
    assert plan.describe() == "Ray cluster auto: 1 node(s) x 8 GPU(s)" and plan.cuda_visible_devices == ""
