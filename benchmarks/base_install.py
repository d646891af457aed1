"""What the base install (no PyTorch) costs on this machine: size, install, import, first verify.

``pip install faceverify`` without extras; in one run it measures:

1. **Install**: a fresh venv (``python3 -m venv``) in a temporary folder, then
   ``pip install -c requirements/lock.txt <repo>`` (not editable: what a user gets), timed
   (a) from a **cold** pip cache (``PIP_CACHE_DIR`` a new empty folder: everything is
   downloaded) and (b) from a **warm** one (the same install into another fresh venv with
   the cache (a) filled), and (c) from local wheels only (``pip wheel`` of the same set into a
   folder, untimed; then ``pip install --no-index --find-links``: the install without the
   network). pip keeps downloads only when the responses carry caching headers; where a
   proxy strips them, (b) re-downloads every wheel and only reuses the wheels pip built
   (face-recognition-models is an sdist): the report shows what the cache holds. The venv's
   size on disk (``du``-style: allocated blocks, hard links once), the 10 biggest installed
   distributions (from their RECORD files) and what requires each. torch, timm or matplotlib
   in the base install is an error.
2. **Import time** of ``import faceverify`` in that venv, and of ``import faceverify;
   faceverify.build_model`` (the lazy attribute), each in a fresh process, median of 5.
3. **First verify from a cold process**: ``faceverify verify A B --model dlib_resnet_v1 --json``
   on two photos of ``../shared/faces/gallery/obama`` (beside the repo), (a) with an empty
   ``XDG_CACHE_HOME`` (the ONNX graph is written from dlib's ``.dat`` first), (b) with that
   cache warm (median of 3); and, for comparison, the same command in the full dev venv
   (``<repo>/.venv``, with PyTorch) with ``--backend torch`` and with the default backend
   (ONNX Runtime there too, but in a venv that has torch), median of 3 after one warm-up.
4. The machine: CPU model and cores, load average around each step, Python, pip, date.

pip's configuration: by default the installs ignore this machine's pip configuration files
and ``PIP_*`` variables (local mirrors, find-links, global constraints) and use PyPI, as a
user's machine would (``PIP_CONFIG_FILE=/dev/null``; ``PIP_CERT`` and ``PIP_DEFAULT_TIMEOUT``
are kept); ``--inherit-pip-config`` keeps them.

Run:
    python benchmarks/base_install.py [--json out.json]
    python benchmarks/base_install.py --skip-cold --skip-wheelhouse     # quick: warm cache only

``--skip-cold`` installs from an existing pip cache (``--pip-cache``, default pip's own) and
skips the cold-cache verify. Results go into docs/install.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

MB = 1_000_000
FORBIDDEN = ("torch", "timm", "matplotlib")
MODEL = "dlib_resnet_v1"
IMPORT_RUNS = 5
VERIFY_RUNS = 3
TOP_PACKAGES = 10
# PIP_* variables that change how pip connects, not where it installs from
KEPT_PIP_VARS = ("PIP_CERT", "PIP_CLIENT_CERT", "PIP_DEFAULT_TIMEOUT")

# Run by the venv's own python: every installed distribution, its size on disk (from its
# RECORD, each inode once) and which installed distributions require it in the base install.
_DISTRIBUTIONS_SCRIPT = r"""
import json, os
from importlib import metadata
from pip._vendor.packaging.requirements import Requirement
from pip._vendor.packaging.utils import canonicalize_name

dists = {canonicalize_name(d.metadata["Name"]): d for d in metadata.distributions()}
required_by = {name: [] for name in dists}
for name, dist in dists.items():
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        other = canonicalize_name(req.name)
        if other in required_by:
            required_by[other].append(dist.metadata["Name"])
seen = set()
rows = []
for name, dist in dists.items():
    size = files = 0
    for file in dist.files or []:
        try:
            st = os.lstat(dist.locate_file(file))
        except OSError:
            continue
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            size += st.st_blocks * 512
            files += 1
    rows.append({"name": dist.metadata["Name"], "version": dist.version, "bytes": size,
                 "files": files, "required_by": sorted(required_by[name])})
print(json.dumps(rows))
"""

_IMPORT_SCRIPT = r"""
import json, sys, time
t = time.perf_counter()
import faceverify
{access}
seconds = time.perf_counter() - t
heavy = ("numpy", "PIL", "onnxruntime", "onnx", "dlib", "faiss", "fastapi", "torch")
print(json.dumps({{"seconds": seconds, "loaded": [m for m in heavy if m in sys.modules]}}))
"""


Step = Callable[[str, Callable[[], Any]], Any]


class BenchError(Exception):
    """A precondition or a measured command failed: the run stops with this message."""


# ---------------------------------------------------------------- helpers


def run(cmd: Sequence[str | Path], env: dict[str, str], cwd: Path, what: str) -> tuple[float, str]:
    """Run ``cmd``; its wall seconds and stdout. Raises BenchError with its output if it fails."""
    start = time.perf_counter()
    proc = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip()[-3000:]
        raise BenchError(f"{what} failed (exit {proc.returncode}): {' '.join(map(str, cmd))}\n{tail}")
    return seconds, proc.stdout


def disk_usage(path: Path) -> int:
    """Bytes allocated under ``path`` (like ``du -sB1``: blocks, each hard-linked file once)."""
    st = os.lstat(path)
    seen: set[tuple[int, int]] = {(st.st_dev, st.st_ino)}
    total = st.st_blocks * 512
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            st = os.lstat(os.path.join(root, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def clean_env() -> dict[str, str]:
    """This process's environment without what would leak into the measured interpreters."""
    env = dict(os.environ)
    for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "XDG_CACHE_HOME"):
        env.pop(var, None)
    return env


def wait_for_quiet(max_load: float | None, max_wait: float) -> list[float]:
    """Wait (up to ``max_wait`` s) until the 1-minute load average is at most ``max_load``."""
    deadline = time.monotonic() + max_wait
    while max_load is not None and os.getloadavg()[0] > max_load and time.monotonic() < deadline:
        print(f"load {load()} > {max_load}: waiting", file=sys.stderr, flush=True)
        time.sleep(min(60.0, max(1.0, deadline - time.monotonic())))
    return load()


# ---------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_state(repo: Path) -> dict[str, Any]:
    """The commit measured and whether the tree had local changes (read-only git calls)."""

    def git(*args: str) -> str:
        proc = subprocess.run(["git", "--no-optional-locks", *args], cwd=repo, capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    changed = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD") or None, "modified_files": len(changed.splitlines())}


def machine_info(python: str, repo: Path) -> dict[str, Any]:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    _, version = run(
        [python, "-c", "import platform; print(platform.python_version())"], clean_env(), repo, python
    )
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": affinity,
        "platform": platform.platform(),
        "python": version.strip(),
        "python_executable": shutil.which(python) or python,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git": git_state(repo),
    }


# ---------------------------------------------------------------- install


def pip_env(cache: Path | None, inherit: bool) -> dict[str, str]:
    """Environment for pip: its cache at ``cache`` (None: pip's default) and, unless
    ``inherit``, no pip configuration from this machine (PyPI, as on a user's machine)."""
    env = clean_env()
    if not inherit:
        env = {k: v for k, v in env.items() if not k.startswith("PIP_") or k in KEPT_PIP_VARS}
        env["PIP_CONFIG_FILE"] = os.devnull
    if cache is not None:
        env["PIP_CACHE_DIR"] = str(cache)
    return env


def make_venv(python: str, path: Path) -> float:
    seconds, _ = run([python, "-m", "venv", path], clean_env(), path.parent, "python -m venv")
    return seconds


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if not found:
        raise BenchError(f"no site-packages under {venv}")
    return found[0]


def distributions(venv: Path) -> list[dict[str, Any]]:
    _, out = run([venv / "bin/python", "-c", _DISTRIBUTIONS_SCRIPT], clean_env(), venv, "listing packages")
    return sorted(json.loads(out), key=lambda d: -d["bytes"])


def check_forbidden(dists: list[dict[str, Any]], venv: Path) -> None:
    names = {d["name"].lower(): d for d in dists}
    bad = [
        f"{names[n]['name']} {names[n]['version']} (required by {names[n]['required_by'] or '?'})"
        for n in FORBIDDEN
        if n in names
    ]
    if bad:
        raise BenchError(f"the base install in {venv} contains {', '.join(bad)}: it must not")


def pip(venv: Path, *args: str | Path) -> list[str | Path]:
    return [venv / "bin/python", "-m", "pip", *args, "--disable-pip-version-check", "-q"]


def install(python: str, venv: Path, target: Sequence[str | Path], env: dict[str, str]) -> dict[str, Any]:
    """A fresh venv at ``venv`` and the timed ``pip install TARGET`` into it; its size and packages."""
    venv_seconds = make_venv(python, venv)
    _, pip_version = run([venv / "bin/python", "-m", "pip", "--version"], env, venv, "pip --version")
    load_before = load()
    seconds, _ = run(pip(venv, "install", *target), env, venv.parent, "the base install")
    dists = distributions(venv)
    check_forbidden(dists, venv)
    return {
        "seconds": round(seconds, 2),
        "venv_seconds": round(venv_seconds, 2),
        "pip": pip_version.split(" from ")[0].strip(),
        "load_before": load_before,
        "load_after": load(),
        "venv_bytes": disk_usage(venv),
        "site_packages_bytes": disk_usage(site_packages(venv)),
        "packages": dists,
    }


def pip_cache_contents(cache: Path) -> dict[str, int]:
    """Bytes of downloads (pip's HTTP cache) and of wheels pip built, under ``cache``."""
    http = sum(disk_usage(cache / d) for d in ("http", "http-v2") if (cache / d).is_dir())
    wheels = disk_usage(cache / "wheels") if (cache / "wheels").is_dir() else 0
    return {"total_bytes": disk_usage(cache), "http_bytes": http, "built_wheels_bytes": wheels}


def wheelhouse_install(python: str, work: Path, repo: Path, env: dict[str, str]) -> dict[str, Any]:
    """Every wheel of the base install in a folder (untimed), then the timed install from it
    alone (``--no-index``): the install itself, without the network."""
    wheels = work / "wheelhouse"
    builder = work / "venv-cold" if (work / "venv-cold").is_dir() else work / "venv-warm"
    lock = repo / "requirements/lock.txt"
    run(pip(builder, "wheel", "-w", wheels, "-c", lock, repo), env, work, "pip wheel (the wheelhouse)")
    target: list[str | Path] = ["--no-index", "--find-links", wheels, "-c", lock, "faceverify"]
    out = install(python, work / "venv-wheelhouse", target, env)
    out["wheelhouse_bytes"] = disk_usage(wheels)
    return out


# ---------------------------------------------------------------- timings


def import_time(venv: Path, access: str, work: Path) -> dict[str, Any]:
    code = _IMPORT_SCRIPT.format(access=access)
    runs = [
        json.loads(run([venv / "bin/python", "-c", code], clean_env(), work, "import")[1])
        for _ in range(IMPORT_RUNS)
    ]
    samples = [r["seconds"] for r in runs]
    return {
        "median_s": round(median(samples), 4),
        "samples_s": [round(s, 4) for s in samples],
        "modules_loaded": runs[-1]["loaded"],
    }


def verify_once(
    faceverify: Path, photos: tuple[Path, Path], env: dict[str, str], work: Path, extra: Sequence[str] = ()
) -> tuple[float, dict[str, Any]]:
    cmd: list[str | Path] = [faceverify, "verify", *photos, "--model", MODEL, "--json", *extra]
    seconds, out = run(cmd, env, work, "faceverify verify")
    result = json.loads(out)
    if result.get("same") is not True:
        raise BenchError(f"{cmd} says the two photos are not the same person: {out.strip()}")
    return seconds, result


def verify_env(cache: Path, data: Path) -> dict[str, str]:
    env = clean_env()
    env.update(XDG_CACHE_HOME=str(cache), XDG_DATA_HOME=str(data))
    return env


def graphs(cache: Path) -> list[str]:
    return sorted(p.name for p in (cache / "faceverify" / "onnx").glob("*.onnx"))


def verify_base(venv: Path, photos: tuple[Path, Path], work: Path, cold: bool) -> dict[str, Any]:
    """(a) an empty XDG cache (skipped if not ``cold``: one untimed warm-up instead), (b) warm."""
    cache, data = work / "xdg-cache-base", work / "xdg-data-base"
    env = verify_env(cache, data)
    faceverify = venv / "bin/faceverify"
    out: dict[str, Any] = {}
    first, result = verify_once(faceverify, photos, env, work)
    if cold:
        out["cold_cache_s"] = round(first, 3)
        out["graphs_written"] = graphs(cache)
        if not out["graphs_written"]:
            raise BenchError(f"no ONNX graph was written under {cache}/faceverify/onnx")
    samples = [verify_once(faceverify, photos, env, work)[0] for _ in range(VERIFY_RUNS)]
    out.update(
        warm_cache_median_s=round(median(samples), 3),
        warm_cache_samples_s=[round(s, 3) for s in samples],
        score=result["score"],
    )
    return out


def verify_dev(dev_venv: Path, photos: tuple[Path, Path], work: Path, backend: str) -> dict[str, Any]:
    """The same command in the full dev venv with ``--backend``: one warm-up, then median of 3."""
    faceverify = dev_venv / "bin/faceverify"
    if not faceverify.exists():
        raise BenchError(f"{faceverify} is missing: make install-test (or pass --dev-venv)")
    env = verify_env(work / "xdg-cache-dev", work / "xdg-data-dev")
    extra = ["--backend", backend]
    _, result = verify_once(faceverify, photos, env, work, extra)
    samples = [verify_once(faceverify, photos, env, work, extra)[0] for _ in range(VERIFY_RUNS)]
    return {
        "median_s": round(median(samples), 3),
        "samples_s": [round(s, 3) for s in samples],
        "score": result["score"],
    }


# ---------------------------------------------------------------- inputs and report


def find_photos(repo: Path) -> tuple[Path, Path]:
    folder = repo.parent / "shared" / "faces" / "gallery" / "obama"
    photos = sorted(p for p in folder.glob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if len(photos) < 2:
        raise BenchError(
            f"need two photos of one person in {folder} (the shared faces beside the repo); "
            f"found {len(photos)}"
        )
    return photos[0], photos[1]


def check_repo(repo: Path) -> None:
    for name in ("pyproject.toml", "requirements/lock.txt"):
        if not (repo / name).is_file():
            raise BenchError(f"{repo / name} is missing: is --repo the faceverify repository?")


def mb(n: int) -> str:
    return f"{n / MB:,.1f}"


def install_rows(inst: dict[str, Any]) -> list[tuple[str, str]]:
    labels = {
        "cold": "install, cold pip cache (empty)",
        "warm": "install, warm pip cache",
        "wheelhouse": "install from local wheels only (`--no-index`)",
    }
    rows = [
        (label, f"{inst[k]['seconds']:.1f} s (load {inst[k]['load_before'][0]} → {inst[k]['load_after'][0]})")
        for k, label in labels.items()
        if k in inst
    ]
    if "pip_cache" in inst:
        c = inst["pip_cache"]
        note = (
            "" if c["http_bytes"] > MB else ": pip kept no downloads, so the warm install re-downloads wheels"
        )
        rows.append(
            (
                "pip cache after the cold install",
                f"{mb(c['total_bytes'])} MB (downloads {mb(c['http_bytes'])} MB, "
                f"built wheels {mb(c['built_wheels_bytes'])} MB){note}",
            )
        )
    return rows


def render(r: dict[str, Any]) -> str:
    m, inst, imp, ver = r["machine"], r["install"], r["import"], r["verify"]
    main = inst["warm"]
    base = ver["base"]
    rows: list[tuple[str, str]] = [
        ("machine", f"{m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable)"),
        ("python / pip (venv's)", f"{m['python']} / {main['pip']}"),
        ("date", m["date"]),
        ("pip sources", r["pip_sources"]),
        *install_rows(inst),
        (
            "venv size on disk",
            f"{mb(main['venv_bytes'])} MB (site-packages {mb(main['site_packages_bytes'])} MB)",
        ),
        ("distributions installed", f"{len(main['packages'])} (pip and setuptools included)"),
        ("torch / timm / matplotlib", "absent"),
        ("`import faceverify`", f"{imp['plain']['median_s'] * 1000:.0f} ms (median of {IMPORT_RUNS})"),
        ("`import faceverify; faceverify.build_model`", f"{imp['build_model']['median_s'] * 1000:.0f} ms"),
    ]
    if "cold_cache_s" in base:
        rows.append(("first verify, empty XDG cache (writes the graph)", f"{base['cold_cache_s']:.2f} s"))
    rows += [
        ("first verify, warm XDG cache", f"{base['warm_cache_median_s']:.2f} s (median of {VERIFY_RUNS})"),
        (
            "same, dev venv `--backend torch`",
            f"{ver['dev_torch']['median_s']:.2f} s (median of {VERIFY_RUNS})",
        ),
        (
            "same, dev venv `--backend auto` (ONNX Runtime, torch installed)",
            f"{ver['dev_auto']['median_s']:.2f} s (median of {VERIFY_RUNS})",
        ),
        ("load average (1/5/15 min) start → end", f"{r['load']['start']} → {r['load']['end']}"),
    ]
    lines = ["| measurement | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    lines += ["", f"Biggest {TOP_PACKAGES} distributions in the base venv:", ""]
    lines += ["| package | version | MB | required by |", "|---|---|---:|---|"]
    for p in main["packages"][:TOP_PACKAGES]:
        by = ", ".join(p["required_by"]) or "-"
        lines.append(f"| {p['name']} | {p['version']} | {mb(p['bytes'])} | {by} |")
    return "\n".join(lines)


def measure_installs(args: argparse.Namespace, work: Path, step: Step) -> dict[str, Any]:
    """Cold cache (unless --skip-cold), warm cache, and (unless --skip-wheelhouse) wheels only."""
    target: list[str | Path] = ["-c", args.repo / "requirements/lock.txt", args.repo]
    installs: dict[str, Any] = {}
    if args.skip_cold:
        cache = args.pip_cache
        if cache is not None and not any(cache.glob("*")):
            print(f"warning: {cache} is empty: the 'warm' install downloads everything", file=sys.stderr)
    else:
        cache = work / "pip-cache"
        cache.mkdir()
    env = pip_env(cache, args.inherit_pip_config)
    if not args.skip_cold:
        installs["cold"] = step(
            "install, cold cache", lambda: install(args.python, work / "venv-cold", target, env)
        )
    if cache is not None and cache.is_dir():
        installs["pip_cache"] = pip_cache_contents(cache)
    installs["warm"] = step(
        "install, warm cache", lambda: install(args.python, work / "venv-warm", target, env)
    )
    if not args.skip_wheelhouse:
        installs["wheelhouse"] = step(
            "install, local wheels", lambda: wheelhouse_install(args.python, work, args.repo, env)
        )
    return installs


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    photos = find_photos(args.repo)
    check_repo(args.repo)
    result: dict[str, Any] = {
        "machine": machine_info(args.python, args.repo),
        "repo": str(args.repo),
        "photos": [str(p) for p in photos],
        "model": MODEL,
        "pip_sources": "this machine's pip config"
        if args.inherit_pip_config
        else "PyPI (pip config ignored)",
        "load": {"start": wait_for_quiet(args.max_load, args.max_wait)},
    }
    step = _stepper()
    result["install"] = measure_installs(args, work, step)
    venv = work / "venv-warm"
    result["import"] = {
        "plain": step("import", lambda: import_time(venv, "", work)),
        "build_model": step(
            "import + build_model", lambda: import_time(venv, "faceverify.build_model", work)
        ),
    }
    result["verify"] = {
        "base": step("verify, base venv", lambda: verify_base(venv, photos, work, not args.skip_cold)),
        "dev_torch": step(
            "verify, dev venv (torch)", lambda: verify_dev(args.dev_venv, photos, work, "torch")
        ),
        "dev_auto": step("verify, dev venv (auto)", lambda: verify_dev(args.dev_venv, photos, work, "auto")),
    }
    result["load"]["end"] = load()
    return result


def _stepper() -> Step:
    def step(name: str, fn: Callable[[], Any]) -> Any:
        print(f"[{time.strftime('%H:%M:%S')}] {name} (load {load()})", file=sys.stderr, flush=True)
        return fn()

    return step


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    repo = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--repo", type=Path, default=repo, help="the faceverify repository (default: %(default)s)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    p.add_argument("--skip-cold", action="store_true", help="warm pip cache only, no cold-cache verify")
    p.add_argument("--skip-wheelhouse", action="store_true", help="no install from local wheels (--no-index)")
    p.add_argument("--keep", action="store_true", help="keep the temporary venvs and caches")
    p.add_argument("--python", default="python3", help="the interpreter that makes the venvs (python3)")
    p.add_argument("--dev-venv", type=Path, help="the full dev venv with PyTorch (default: REPO/.venv)")
    p.add_argument("--pip-cache", type=Path, help="with --skip-cold: the warm pip cache (default: pip's own)")
    p.add_argument(
        "--inherit-pip-config",
        action="store_true",
        help="install with this machine's pip config and PIP_* variables (mirrors, find-links)",
    )
    p.add_argument(
        "--max-load", type=float, help="before measuring, wait until the 1-min load is at most this"
    )
    p.add_argument("--max-wait", type=float, default=600, help="longest wait for --max-load, seconds (600)")
    args = p.parse_args(argv)
    if args.pip_cache is not None and not args.skip_cold:
        p.error("--pip-cache goes with --skip-cold (the cold install always starts from an empty cache)")
    args.repo = args.repo.resolve()
    args.dev_venv = (args.dev_venv or args.repo / ".venv").absolute()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="faceverify-base-install-"))
    try:
        result = measure(args, work)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
