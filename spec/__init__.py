"""The Mimic API contract, `openapi.yaml`, and the OpenAI-compatible one, shipped as package data.

Both the reference server and the conformance suite read the contract through
this module, so that an installed kit finds its spec without depending on the
working directory.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from spec._contract import Contract, MediaTypeSchemas, Operation, Parameter

__all__ = [
    "CONTRACTS",
    "OPENAI_SPEC_PATH",
    "SPEC_PATH",
    "Contract",
    "MediaTypeSchemas",
    "Operation",
    "Parameter",
    "contract",
    "load",
    "load_path",
    "sha256",
]

SPEC_PATH: Path = Path(str(resources.files(__name__).joinpath("openapi.yaml")))
"""Where the kit's own `openapi.yaml` lives once installed."""

OPENAI_SPEC_PATH: Path = Path(str(resources.files(__name__).joinpath("openai.yaml")))
"""The OpenAI-compatible contract, derived from `openapi.yaml` (:mod:`spec.openai_derivation`)."""

CONTRACTS: dict[str, Path] = {"mimic": SPEC_PATH, "openai": OPENAI_SPEC_PATH}
"""The contracts shipped with the kit, by the name ``--contract`` takes."""


@cache
def load(name: str = "mimic") -> dict[str, Any]:
    """Return a contract the kit ships (:data:`CONTRACTS`) as a dict: parsed once, do not mutate."""
    return load_path(CONTRACTS[name])


def load_path(path: str | Path) -> dict[str, Any]:
    """Parse an OpenAPI document (YAML or JSON) from `path`."""
    with Path(path).open("rb") as handle:
        document = yaml.safe_load(handle)
    if not isinstance(document, dict) or "openapi" not in document:
        raise ValueError(f"{path} is not an OpenAPI document (no top-level 'openapi' field)")
    return document


def sha256(path: str | Path = SPEC_PATH) -> str:
    """Return the hex SHA-256 of the spec file's bytes, as recorded in every report."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@cache
def contract(name: str = "mimic") -> Contract:
    """Return a contract the kit ships (:data:`CONTRACTS`), compiled once and shared."""
    return Contract(load(name))
