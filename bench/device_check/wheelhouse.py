"""The carry for a lent GPU machine: binary wheels of what its image lacks, and modelserve's own.

    .venv/bin/python -m bench.device_check.wheelhouse [--dest .wheelhouse] [--python-version 3.12]

modelserve needs its requirements and its ``hf`` and ``gpu`` extras (pyproject.toml) there. Those
the image lacks (``image-packages.txt``), and what they need in turn, are downloaded as wheels
for the machine's Python and platform with ``--no-deps``, each at the version installed here
(the one the tests ran): the machine reaches no index, so the closure is computed here, level by
level, from each wheel's own Requires-Dist (markers evaluated for that Python on Linux x86-64).
A need the image has is not carried, except ALSO_CARRY. Then ``python -m build --wheel`` builds
modelserve's wheel beside them. One version of each (two would stop the install there), and the
whole under LIMIT (the device tool's carry is 64 MiB with the working tree).
"""

from __future__ import annotations

import argparse
import email.parser
import importlib.metadata
import json
import shutil
import subprocess
import sys
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import tomllib
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
MANIFEST = "wheelhouse.json"
DEVICE_PYTHON = "3.12"
EXTRAS = ("hf", "gpu")
LIMIT = 40 * 1024 * 1024
# Carried although the image has them: their version matters to a carried package and the
# image's is not known here (the install step there reports every unmet requirement).
ALSO_CARRY = {
    "werkzeug": "flask pairs with its own werkzeug release",
    "typing-extensions": "pydantic-core needs a recent one",
}
# The image is Ubuntu 24.04 (glibc 2.39) on x86-64; pip matches these tags exactly.
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in range(39, 16, -1)] + ["manylinux2014_x86_64", "manylinux1_x86_64"]


class WheelhouseError(Exception):
    pass


@dataclass
class Wheel:
    name: str
    version: str
    file: str
    bytes: int
    why: str


@dataclass
class Wheelhouse:
    python: str  # "3.12", or this interpreter's version for a local one
    platform: str
    wheels: list[Wheel]

    @property
    def bytes(self) -> int:
        return sum(w.bytes for w in self.wheels)

    def describe(self) -> str:
        lines = [f"wheelhouse for Python {self.python} ({self.platform}): {len(self.wheels)} wheels, "
                 f"{self.bytes / 2**20:.1f} MiB (limit {LIMIT / 2**20:.0f} MiB)"]  # fmt: skip
        lines += [f"  {w.name} {w.version}  {w.bytes / 2**20:.2f} MiB  ({w.why})" for w in self.wheels]
        return "\n".join(lines)


def image_packages() -> frozenset[str]:
    lines = (HERE / "image-packages.txt").read_text().splitlines()
    return frozenset(str(canonicalize_name(n)) for n in lines if n.strip() and not n.startswith("#"))


def project_requirements(root: Path = ROOT) -> list[Requirement]:
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    texts = list(project["dependencies"])
    for extra in EXTRAS:
        texts += project["optional-dependencies"][extra]
    return [Requirement(t) for t in texts]


def marker_environment(python: str | None) -> dict[str, str]:
    if python is None:
        return {**{k: str(v) for k, v in default_environment().items()}, "extra": ""}
    return {"python_version": python, "python_full_version": f"{python}.0", "sys_platform": "linux",
            "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
            "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}  # fmt: skip


def _requires(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        message = email.parser.Parser().parsestr(z.read(meta).decode())
    return [Requirement(r) for r in message.get_all("Requires-Dist") or []]


def _download(pins: list[str], dest: Path, python: str | None) -> None:
    tags = [] if python is None else ["--python-version", python, "--implementation", "cp",
                                      *(a for p in PLATFORMS for a in ("--platform", p))]  # fmt: skip
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
           "--only-binary=:all:", "-d", str(dest), *tags, *pins]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise WheelhouseError(f"pip download {' '.join(pins)} failed:\n{proc.stderr[-2000:]}")


def _installed(name: str, why: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        raise WheelhouseError(f"{name} ({why}) is not installed in {sys.prefix}, so no tested version is known; "
                              "run `make setup` (pip install -e '.[hf,modelscope,demo,test]')") from None  # fmt: skip


def _closure(dest: Path, python: str | None) -> list[Wheel]:
    """Download what the image lacks, level by level; each at the version installed here."""
    image, env = image_packages(), marker_environment(python)

    def carried(name: str) -> bool:
        return name not in image or name in ALSO_CARRY

    pending = {str(canonicalize_name(r.name)): f"modelserve requires {r}" for r in project_requirements()
               if carried(canonicalize_name(r.name)) and (r.marker is None or r.marker.evaluate(env))}  # fmt: skip
    wheels: dict[str, Wheel] = {}
    while pending:
        versions = {name: _installed(name, why) for name, why in pending.items()}
        _download([f"{n}=={v}" for n, v in versions.items()], dest, python)
        found = {str(canonicalize_name(parse_wheel_filename(p.name)[0])): p for p in dest.glob("*.whl")}
        level, pending = pending, {}
        for name, why in level.items():
            path = found[name]
            wheels[name] = Wheel(name, versions[name], path.name, path.stat().st_size,
                                 ALSO_CARRY.get(name, why) if name in image else why)  # fmt: skip
            for req in _requires(path):
                dep = str(canonicalize_name(req.name))
                if req.marker is not None and not req.marker.evaluate(env):
                    continue
                if carried(dep) and dep not in wheels and dep not in level:
                    pending.setdefault(dep, f"{name} requires {req}")
    return sorted(wheels.values(), key=lambda w: w.name)


def _project_wheel(dest: Path) -> Wheel:
    # --no-isolation: setuptools from this environment (no index needed for the build itself); its
    # bdist_wheel needs no `wheel` distribution, which build would otherwise insist on.
    proc = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--skip-dependency-check", "--outdir", str(dest), str(ROOT)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    if proc.returncode != 0:
        raise WheelhouseError(f"python -m build --wheel failed:\n{(proc.stdout + proc.stderr)[-2000:]}")
    (path,) = dest.glob("modelserve-*.whl")
    version = parse_wheel_filename(path.name)[1]
    return Wheel("modelserve", str(version), path.name, path.stat().st_size, "this checkout, python -m build --wheel")


def _same_pins(dest: Path, like: Wheelhouse, python: str | None) -> list[Wheel]:
    """``like``'s distributions at its versions, for another Python; modelserve's wheel copied."""
    others = [w for w in like.wheels if w.name != "modelserve"]
    _download([f"{w.name}=={w.version}" for w in others], dest, python)
    found = {str(canonicalize_name(parse_wheel_filename(p.name)[0])): p for p in dest.glob("*.whl")}
    wheels = [Wheel(w.name, w.version, found[w.name].name, found[w.name].stat().st_size, w.why) for w in others]
    own = next(w for w in like.wheels if w.name == "modelserve")
    return [*wheels, Wheel(own.name, own.version, own.file, own.bytes, own.why)]


def build(dest: Path, *, python: str | None = DEVICE_PYTHON, like: tuple[Path, Wheelhouse] | None = None) -> Wheelhouse:
    """Fill ``dest`` (emptied of earlier wheels first). ``python``: the target's version for a
    carry (platform x86-64 manylinux); None for this interpreter and platform. ``like``: another
    wheelhouse (its folder and manifest) whose pins to take instead of resolving them again."""
    dest.mkdir(parents=True, exist_ok=True)
    for old in [*dest.glob("*.whl"), dest / MANIFEST]:
        old.unlink(missing_ok=True)
    if like is None:
        wheels = [*_closure(dest, python), _project_wheel(dest)]
    else:
        wheels = _same_pins(dest, like[1], python)
        shutil.copy2(like[0] / wheels[-1].file, dest / wheels[-1].file)
    names = [w.name for w in wheels]
    if len(set(names)) != len(names) or len(list(dest.glob("*.whl"))) != len(wheels):
        raise WheelhouseError(f"{dest} holds more than one version of something: {sorted(p.name for p in dest.glob('*.whl'))}")
    house = Wheelhouse(python or f"{sys.version_info.major}.{sys.version_info.minor}",
                       "manylinux x86_64" if python else "this machine", wheels)  # fmt: skip
    (dest / MANIFEST).write_text(json.dumps(asdict(house), indent=2) + "\n")
    if house.bytes > LIMIT:
        raise WheelhouseError(f"{house.describe()}\nis over {LIMIT / 2**20:.0f} MiB; carry less (ALSO_CARRY, extras)")
    return house


def read(dest: Path) -> Wheelhouse:
    raw = json.loads((dest / MANIFEST).read_text())
    return Wheelhouse(raw["python"], raw["platform"], [Wheel(**w) for w in raw["wheels"]])


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.device_check.wheelhouse", description=__doc__.split("\n")[0])
    parser.add_argument("--dest", type=Path, default=ROOT / ".wheelhouse")
    parser.add_argument("--python-version", default=DEVICE_PYTHON, help="the lent machine's Python [3.12]")
    args = parser.parse_args()
    try:
        house = build(args.dest, python=args.python_version)
    except WheelhouseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(house.describe())
    dest = args.dest.resolve()
    if dest.is_relative_to(ROOT):
        print(f"the device tool's run carries it: carry=['{dest.relative_to(ROOT)}']  (README: GPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
