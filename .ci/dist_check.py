"""What `pip install` gives a user: build every distribution, install it clean, use it.

Run by `make dist-check` (and by CI after `make test`), with the uv that make pins:

1. `uv build --all-packages`: an sdist per distribution, and each wheel built *from* its
   sdist, so a broken sdist fails here;
2. the artifacts hold what they must (licence, `py.typed`, the packaged farewell
   recording) and nothing they must not (the core sdist carries no plugins, lock or
   benchmarks; the OpenAI plugin is only an extra of the core);
3. a fresh venv gets the core wheel alone: every public module imports, from the venv,
   without any provider plugin;
4. then every wheel, with the core's `[openai]` extra: each plugin imports, and the
   demo (`examples/demo.py`) runs against the installed package, not the source tree.

Dependencies are those of `uv.lock` (exported per step), from uv's cache when it holds
them (after `make .venv/.synced`: no network), else from the registry; `uv pip check`
then proves the wheels' own metadata is satisfied.
Distribution names are read from the pyproject files, so a rename needs no edit here.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "dist"


def run(*cmd: str | Path, cwd: Path = ROOT) -> str:
    # Inline programs (-c) are shown by their first line only.
    print("+", " ".join(str(c).strip().split("\n")[0] for c in cmd), flush=True)
    done = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.stdout.write(done.stdout[-4000:])
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"dist-check: command failed ({done.returncode})")
    return done.stdout


def fail(message: str) -> None:
    raise SystemExit(f"dist-check: {message}")


def project_name(pyproject: Path) -> str:
    with pyproject.open("rb") as f:
        name = tomllib.load(f)["project"]["name"]
    assert isinstance(name, str)
    return name


def file_name(project: str) -> str:
    """The name as artifact file names spell it (PEP 625, the wheel spec)."""
    return re.sub(r"[-_.]+", "_", project).lower()


def artifact(name: str, suffix: str) -> Path:
    found = sorted(DIST.glob(f"{name}-*{suffix}"))
    if len(found) != 1:
        fail(f"expected one {name}-*{suffix} in dist/, found {[p.name for p in found]}")
    return found[0]


def check_wheel(wheel: Path, *, must_hold: tuple[str, ...]) -> list[str]:
    """Check the wheel's contents; return its top-level import packages."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = zf.read(metadata_name).decode()
    if not any(re.search(r"\.dist-info/licenses/LICENSE$", n) for n in names):
        fail(f"{wheel.name} carries no LICENSE")
    if "License-Expression: Apache-2.0" not in metadata:
        fail(f"{wheel.name}: no License-Expression: Apache-2.0 in METADATA")
    for required in must_hold:
        if required not in names:
            fail(f"{wheel.name} lacks {required}")
    packages = sorted({n.split("/")[0] for n in names if "/" in n and ".dist-info/" not in n})
    for package in packages:
        if f"{package}/py.typed" not in names:
            fail(f"{wheel.name}: {package} has no py.typed")
    return packages


def check_core(wheel: Path, sdist: Path) -> None:
    check_wheel(wheel, must_hold=("agent_guard/assets/farewell.wav",))
    with zipfile.ZipFile(wheel) as zf:
        metadata_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = zf.read(metadata_name).decode()
    for line in metadata.splitlines():
        if line.startswith("Requires-Dist: livekit-plugins-") and "extra ==" not in line:
            fail(f"{wheel.name}: a provider plugin is a hard dependency ({line})")
    with tarfile.open(sdist) as tf:
        members = [m.split("/", 1)[1] for m in tf.getnames() if "/" in m]
    for required in ("LICENSE", "README.md", "pyproject.toml", "agent_guard/assets/farewell.wav"):
        if required not in members:
            fail(f"{sdist.name} lacks {required}")
    for unwanted in ("plugins/", "benchmarks/", "uv.lock", ".ci/"):
        if any(m.startswith(unwanted) for m in members):
            fail(f"{sdist.name} should not hold {unwanted}")


def install(
    uv: str, venv: Path, work: Path, name: str, export: list[str], wheels: list[Path]
) -> None:
    """Install ``wheels`` into ``venv`` with their dependencies at the locked versions.

    The dependencies come from ``uv export`` (``export`` selects them), installed from
    uv's cache when it holds them (no network), else from the registry; the wheels go in
    without resolution, and ``uv pip check`` then proves their own metadata is satisfied.
    """
    lock = work / f"pylock.{name}.toml"
    export = ["export", "--frozen", "--quiet", "--format", "pylock.toml", *export]
    run(uv, *export, "--no-dev", "--no-emit-workspace", "--output-file", lock)
    target = ["--python", str(venv / "bin" / "python")]
    command = [uv, "pip", "install", "--quiet", *target, "--requirements", str(lock)]
    offline = subprocess.run([*command, "--offline"], capture_output=True, text=True, check=False)
    if offline.returncode == 0:
        print("+", " ".join(command), "--offline", flush=True)
    else:
        print("dist-check: not everything is in uv's cache; using the registry", flush=True)
        run(*command)
    run(uv, "pip", "install", "--quiet", *target, "--no-deps", *map(str, wheels))
    run(uv, "pip", "check", *target)


CORE_ONLY = """
import importlib.metadata, sys
import agent_guard
import agent_guard.classifiers, agent_guard.fallback, agent_guard.instrumentation
import agent_guard.testing, agent_guard.typing
from agent_guard import Farewell
assert agent_guard.__file__.startswith(sys.prefix), agent_guard.__file__
assert agent_guard.__version__ == importlib.metadata.version({name!r}), agent_guard.__version__
assert Farewell.DEFAULT.audio.is_file(), Farewell.DEFAULT.audio
try:
    import livekit.plugins.openai
except ImportError:
    pass
else:
    raise AssertionError("livekit-plugins-openai is installed without the [openai] extra")
print("core", agent_guard.__version__, "imports from", agent_guard.__file__)
"""

PLUGINS = """
import importlib, sys
for name in {packages!r}:
    module = importlib.import_module(name)
    assert module.__file__.startswith(sys.prefix), module.__file__
    assert module.CLASSIFIERS, name
    print("plugin", name, "imports from", module.__file__)
"""

DEMO = """
import runpy, sys
import agent_guard
assert agent_guard.__file__.startswith(sys.prefix), agent_guard.__file__
sys.argv = ["demo", "--out", {out!r}]
runpy.run_path({demo!r}, run_name="__main__")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--uv", default="uv", help="the uv executable")
    parser.add_argument("--skip-demo", action="store_true", help="imports only")
    args = parser.parse_args()
    # Absolute: later steps run in a scratch directory.
    uv = str(Path(shutil.which(args.uv) or args.uv).resolve())

    shutil.rmtree(DIST, ignore_errors=True)
    run(uv, "build", "--all-packages", "--out-dir", DIST)

    core_project = project_name(ROOT / "pyproject.toml")
    core = file_name(core_project)
    plugins = [file_name(project_name(p)) for p in sorted(ROOT.glob("plugins/*/pyproject.toml"))]
    core_wheel = artifact(core, ".whl")
    check_core(core_wheel, artifact(core, ".tar.gz"))
    plugin_wheels = [artifact(name, ".whl") for name in plugins]
    plugin_packages = [p for wheel in plugin_wheels for p in check_wheel(wheel, must_hold=())]
    for name in plugins:
        artifact(name, ".tar.gz")
    print(f"dist-check: {len(plugins) + 1} wheels and sdists look right", flush=True)

    with tempfile.TemporaryDirectory(prefix="dist-check-") as tmp:
        work = Path(tmp)
        venv = work / "venv"
        run(uv, "venv", "--quiet", "--python", sys.executable, venv, cwd=work)
        python = str(venv / "bin" / "python")

        install(uv, venv, work, "core", ["--package", core_project], [core_wheel])
        sys.stdout.write(run(python, "-I", "-c", CORE_ONLY.format(name=core_project), cwd=work))

        install(uv, venv, work, "all", ["--all-packages", "--extra", "openai"], plugin_wheels)
        code = PLUGINS.format(packages=plugin_packages)
        sys.stdout.write(run(python, "-I", "-c", code, cwd=work))

        if not args.skip_demo:
            out = work / "out"
            demo = DEMO.format(out=str(out), demo=str(ROOT / "examples" / "demo.py"))
            printed = run(python, "-I", "-c", demo, cwd=work)
            closes = printed.count("session closed: reason=error")
            if closes != 2 or not (out / "farewell.wav").stat().st_size:
                sys.stdout.write(printed)
                fail("the demo did not run as it should from the installed package")
            sys.stdout.write(textwrap.indent(printed[printed.index("| ") :], "  "))
    print("dist-check: ok", flush=True)


if __name__ == "__main__":
    main()
