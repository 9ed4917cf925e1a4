"""The peer matrix: the suite against other OpenAI-style servers and the reference, one table.

Run:  python bench/peer_matrix.py [--work DIR] [--version 0.3.36] [--seed N] [--profile full]

Not part of CI (it builds llama.cpp and takes tens of minutes). It:

1. installs llama-cpp-python (``llama-cpp-python[server]==VERSION``, built from source for this
   host as pip does) into a venv under ``--work``, and starts its server
   (``python -m llama_cpp.server``);
2. builds llama.cpp's ``llama-server`` with cmake from the llama.cpp sources vendored in the
   same llama-cpp-python sdist from PyPI (``pip download --no-binary :all:``): nothing else is
   downloaded; and starts it;
3. starts the reference server twice, serving the Mimic contract and the OpenAI-compatible one;
4. runs ``mimic-conformance`` against each (every server with the model this kit installs,
   SmolLM2-135M-Instruct, served as ``mythomax``, 2 threads, with its own defaults otherwise):
   the peers under ``--contract openai`` (they serve ``/v1`` only, with OpenAI's errors), the
   reference under the contract each of its modes serves;
5. prints one Markdown table, requirement by server (pass, FAIL, error, skip, n/a), then each
   run's verdict, its MUST and SHOULD counts and its time.

The servers run one at a time, so each run has the machine to itself; the times are wall
times of whole runs on this machine, comparable within one table only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance.server_process import LOCALHOST, free_port, running
from reference.model_install import default_model_path

DEFAULT_VERSION = "0.3.36"
"""The llama-cpp-python release whose server, and whose vendored llama.cpp, are judged."""

MODEL_ALIAS = "mythomax"
THREADS = "2"
API_KEY = "sk-peer-matrix"
"""The one key every server is started with, so that the AUTH rules are judged too."""
_SHOWN = {"pass": "pass", "fail": "**FAIL**", "error": "error", "skip": "skip"}


@dataclass(frozen=True)
class Peer:
    """One server to judge: how to start it, which contract it claims, how to name it."""

    name: str
    command: tuple[str, ...]
    contract: str
    ready_path: str = "/v1/models"
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Run:
    """What one suite run gave."""

    peer: Peer
    results: dict[str, Any]
    seconds: float


def _run(command: Sequence[str], **kwargs: Any) -> None:
    """Run a build or install step; its output goes to stderr, so stdout holds the table alone."""
    print("+", " ".join(command), file=sys.stderr, flush=True)
    subprocess.run(command, check=True, stdout=sys.stderr, **kwargs)


def install_llama_cpp_python(work: Path, version: str) -> Path:
    """A venv with ``llama-cpp-python[server]==version``; return its Python."""
    venv = work / "llama-cpp-python"
    python = venv / "bin" / "python"
    if not python.exists():
        _run([sys.executable, "-m", "venv", str(venv)])
    found = subprocess.run(
        [str(python), "-c", "import llama_cpp; print(llama_cpp.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.stdout.strip() != version:
        env = {**os.environ}
        env.setdefault("CMAKE_ARGS", "-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF")
        _run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                f"llama-cpp-python[server]=={version}",
            ],
            env=env,
        )
    return python


def build_llama_server(work: Path, version: str) -> Path:
    """``llama-server`` built from the llama.cpp vendored in llama-cpp-python's sdist."""
    binary = work / f"llama.cpp-{version}" / "build" / "bin" / "llama-server"
    if binary.exists():
        return binary
    sdists = work / "sdist"
    archive = sdists / f"llama_cpp_python-{version}.tar.gz"
    if not archive.exists():
        _run(
            [
                sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                "--no-binary", ":all:", f"llama-cpp-python=={version}", "-d", str(sdists),
            ]
        )  # fmt: skip
    source = work / f"llama.cpp-{version}"
    if not (source / "CMakeLists.txt").exists():
        prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
            for member in members:
                member.name = member.name.removeprefix(prefix)
            tar.extractall(source, members=[m for m in members if m.name], filter="data")
    build = source / "build"
    _run(
        [
            "cmake", "-S", str(source), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
            "-DGGML_NATIVE=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
            "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=ON",
        ]
    )  # fmt: skip
    _run(["cmake", "--build", str(build), "--target", "llama-server", "-j", str(os.cpu_count())])
    return binary


def peers(work: Path, version: str, model: Path, wanted: Sequence[str] | None) -> list[Peer]:
    """The servers of the matrix (those whose name starts with one of ``wanted``, if given),
    each built or installed as needed."""

    def chosen(name: str) -> bool:
        return not wanted or any(name.startswith(prefix) for prefix in wanted)

    found = []
    reference = (sys.executable, "-m", "reference.cli")
    for name, contract, extra in (
        ("reference (Mimic mode)", "mimic", ()),
        ("reference (OpenAI mode)", "openai", ("--contract", "openai")),
    ):
        if chosen(name):
            keys = (("MIMIC_API_KEYS", API_KEY),)
            found.append(Peer(name, (*reference, *extra), contract, "/health", keys))
    name = f"llama-cpp-python {version} server"
    if chosen(name):
        python = install_llama_cpp_python(work, version)
        command = (
            str(python), "-m", "llama_cpp.server", "--model", str(model),
            "--n_threads", THREADS, "--model_alias", MODEL_ALIAS, "--api_key", API_KEY,
        )  # fmt: skip
        found.append(Peer(name, command, "openai"))
    name = f"llama-server (llama.cpp vendored in {version})"
    if chosen(name):
        binary = build_llama_server(work, version)
        command = (
            str(binary), "-m", str(model), "-t", THREADS, "--alias", MODEL_ALIAS,
            "--api-key", API_KEY,
        )  # fmt: skip
        found.append(Peer(name, command, "openai"))
    return found


@contextmanager
def serving(peer: Peer, work: Path) -> Iterator[str]:
    """Start ``peer`` on a free port; yield its base URL; stop it."""
    port = free_port()
    base_url = f"http://{LOCALHOST}:{port}"
    command = [*peer.command, "--host", LOCALHOST, "--port", str(port)]
    log = work / "logs" / f"{peer.name.split()[0]}-{peer.contract}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **dict(peer.env)}
    with running(
        command,
        base_url,
        log_path=log,
        env=env,
        timeout=300,
        paths=(peer.ready_path,),
        headers={"Authorization": f"Bearer {API_KEY}"},
    ):
        yield base_url


def judge(peer: Peer, work: Path, seed: str, profile: str) -> Run:
    """Run the suite against ``peer`` under the contract it claims."""
    report_dir = work / "reports" / f"{peer.name.split()[0]}-{peer.contract}"
    shutil.rmtree(report_dir, ignore_errors=True)
    with serving(peer, work) as base_url:
        started = time.monotonic()
        subprocess.run(
            [
                sys.executable, "-m", "conformance", "--target", base_url,
                "--contract", peer.contract, "--seed", seed, "--profile", profile,
                "--report-dir", str(report_dir), "--api-key", API_KEY, "-q",
            ],
            check=False,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        seconds = time.monotonic() - started
    results = json.loads((report_dir / "results.json").read_text())
    return Run(peer, results, seconds)


def table(runs: Sequence[Run]) -> str:
    """The matrix as Markdown: requirement by server, then each run's verdict and time."""
    header = "| requirement | level | " + " | ".join(run.peer.name for run in runs) + " |"
    lines = [header, "|---|---|" + "---|" * len(runs)]
    outcomes = [{r["id"]: r for r in run.results["requirements"]} for run in runs]
    for requirement in runs[0].results["requirements"]:
        rid = requirement["id"]
        cells = [
            _SHOWN.get(found[rid]["outcome"], "n/a") if rid in found else "-" for found in outcomes
        ]
        lines.append(f"| {rid} | {requirement['level']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| server | contract | verdict | MUST pass/fail/error | SHOULD pass/fail | time |",
    ]
    lines.append("|---|---|---|---|---|---|")
    for run in runs:
        must, should = run.results["summary"]["must"], run.results["summary"]["should"]
        verdict = run.results["verdict"].split(":")[0]
        lines.append(
            f"| {run.peer.name} | {run.peer.contract} | {verdict} | "
            f"{must['passed']}/{must['failed']}/{must['errored']} | "
            f"{should['passed']}/{should['failed']} | {run.seconds:.0f} s |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "mimic-peers")
    parser.add_argument("--version", default=DEFAULT_VERSION, help="llama-cpp-python release")
    parser.add_argument("--seed", default="20261204")
    parser.add_argument("--profile", default="full", choices=("quick", "full", "thorough"))
    parser.add_argument(
        "--only", action="append", help="judge only the servers whose name starts with this"
    )
    args = parser.parse_args(argv)
    model = default_model_path()
    if not model.is_file():
        print(f"no model at {model}: run mimic-reference-install-model", file=sys.stderr)
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    runs = []
    for peer in peers(args.work, args.version, model, args.only):
        print(f"judging {peer.name} under the {peer.contract} contract", file=sys.stderr)
        runs.append(judge(peer, args.work, args.seed, args.profile))
    print(table(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
