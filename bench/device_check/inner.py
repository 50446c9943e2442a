"""The steps that run in the installed environment (the image's Python, the wheelhouse first on
its path), appending to the summary the outer process began. Whatever fails, the deployments it
started are stopped and the summary is written.

    PYTHONPATH=SITE:ROOT python -P -m bench.device_check.inner --device D --out O --work W --site S --deadline T
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

from bench.device_check.bench_step import bench_step
from bench.device_check.engine import engine_step
from bench.device_check.harness import Ctx
from bench.device_check.placement import placement_step
from bench.device_check.serving import down_step, model_step, record_step, serve_step
from bench.device_check.summary import SUMMARY_NAME, Budget, Summary

LOG_NAME = "logs.txt"
LOG_LIMIT = 4 * 1024 * 1024


def _host(ctx: Ctx) -> None:
    import psutil
    import torch

    host = ctx.summary.host
    host.update({"python": sys.version.split()[0], "platform": platform.platform(), "cpus": psutil.cpu_count(),
                 "memory_gib": round(psutil.virtual_memory().total / 2**30, 1), "torch": torch.__version__,
                 "torch_cuda": torch.version.cuda})  # fmt: skip
    if ctx.cuda and torch.cuda.is_available():
        import pynvml

        pynvml.nvmlInit()
        try:
            driver = pynvml.nvmlSystemGetDriverVersion()
            host["driver"] = driver.decode() if isinstance(driver, bytes) else driver
        finally:
            pynvml.nvmlShutdown()
        host["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.device_check.inner")
    p.add_argument("--device", choices=("cuda", "cpu"), required=True)
    for name in ("--out", "--work", "--site"):
        p.add_argument(name, type=Path, required=True)
    p.add_argument("--deadline", type=float, required=True, help="time.time() by which the summary is final")
    args = p.parse_args()
    summary = Summary.load(args.out / SUMMARY_NAME)
    ctx = Ctx(args.device, args.out, args.work, args.site, Budget(args.deadline), summary)
    try:
        _host(ctx)
        record_step(ctx)
        model_step(ctx)
        record = serve_step(ctx)
        bench_step(ctx, record)
        down_step(ctx, record)
        placement_step(ctx)
        engine_step(ctx)
    finally:
        stop = ctx.modelserve("down", "--all", timeout=30, budgeted=False)
        if stop.code != 0:
            print(f"modelserve down --all: {stop.why()}", file=sys.stderr)
        (args.out / LOG_NAME).write_text("\n\n".join(ctx.logs)[-LOG_LIMIT:])
        summary.write(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
