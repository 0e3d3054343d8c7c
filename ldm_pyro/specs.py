"""Declarative method specs: one TOML file per method in the catalog.

A spec names the task, the latent model, the entropy estimator, the form of the
objective, the encoder, the data and the training settings. Specs are parsed as data
with :mod:`tomllib`, so nothing in them is executed. The one exception is
``model.program``, which may name a user's Pyro program as ``"module:function"`` to
be imported on request.

Every field has a default in :data:`SCHEMA`. Unknown fields raise ``ValueError``
listing the valid ones. Tables marked "open" in the schema (estimator, kernel and
encoder arguments) are checked against the constructor they are passed to.
"""

from __future__ import annotations

import copy
import importlib.resources
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

OPEN = object()  # marks a table whose keys are checked by the builder that uses it

#: Defaults of every spec field. Nested dictionaries are TOML tables.
SCHEMA: dict[str, Any] = {
    "name": "",
    "description": "",
    "task": "paired",
    "form": "ldm",
    "space": "plane",
    "model": {
        "program": "paired",
        "prior": "flat",
        "kernel": "gaussian",
        "kernel_params": OPEN,
        "prior_params": OPEN,
        "stop_gradient": [],
    },
    "entropy": OPEN,
    "encoder": OPEN,
    "data": {
        "name": "digits",
        "path": "",
        "x_key": "x",
        "y_key": "y",
        "test_size": 0.25,
        "augment": OPEN,
    },
    "training": {
        "epochs": 100,
        "batch_size": 256,
        "lr": 1e-3,
        "weight_decay": 0.0,
        "optimizer": "adam",
        "latent_lr_multiplier": 1.0,
        "lr_schedule": "constant",
        "min_lr_factor": 0.0,
        "milestones": [0.33, 0.66],
        "gamma": 0.5,
        "grad_clip": 0.0,
        "entropy_weight": 1.0,
        "seed": 0,
        "checkpoint_every": 10,
        "log_every": 10,
        "gather": "auto",
        "device": "cpu",
        "precision": "fp32",
    },
    "evaluation": {
        "knn_k": 5,
    },
    "task_params": OPEN,
}

SPEC_SUFFIX = ".toml"


def catalog_dir() -> Path:
    """Return the folder of the method catalog.

    An installed wheel carries the catalog as ``ldm_pyro/_catalog``; a source
    checkout has it in ``models/`` beside the package.
    """
    packaged = importlib.resources.files("ldm_pyro").joinpath("_catalog")
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "models"


def available_specs() -> list[str]:
    """Return the names of the catalog specs, sorted."""
    folder = catalog_dir()
    if not folder.is_dir():
        return []
    return sorted(path.stem for path in folder.glob(f"*{SPEC_SUFFIX}"))


def list_specs() -> list[tuple[str, str]]:
    """Return ``(name, description)`` for every catalog spec."""
    rows = []
    for name in available_specs():
        spec = read_spec_file(catalog_dir() / f"{name}{SPEC_SUFFIX}")
        rows.append((name, str(spec.get("description", "")).strip()))
    return rows


def read_spec_file(path: Path) -> dict[str, Any]:
    """Parse a TOML spec file without validating it."""
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"spec file {path} is not valid TOML: {error}") from error


def load_spec(
    name_or_path: str | Path, overrides: Iterable[str] = ()
) -> dict[str, Any]:
    """Load a catalog spec by name or a spec file by path, apply overrides, validate.

    Args:
        name_or_path: a catalog name such as ``"vicreg-ldm"`` or a path to a TOML
            file.
        overrides: ``"section.field=value"`` strings; values are parsed as TOML
            values (``5``, ``0.1``, ``true``, ``[1, 2]``, ``"text"``) and fall back to
            plain strings.

    Returns:
        The resolved spec: every field of :data:`SCHEMA` filled in.

    Raises:
        ValueError: for an unknown spec name (listing the catalog), a missing file,
            an unknown field (listing the valid ones) or a malformed override.
    """
    raw = _read_named_spec(name_or_path)
    for override in overrides:
        _apply_override(raw, override)
    spec = _merge_defaults(SCHEMA, raw, prefix="")
    if not spec["name"]:
        spec["name"] = Path(str(name_or_path)).stem
    return spec


def dump_spec(spec: Mapping[str, Any]) -> str:
    """Serialize a resolved spec as TOML text (scalars, lists and tables)."""
    lines: list[str] = []
    _dump_table(spec, [], lines)
    return "\n".join(lines).strip() + "\n"


def _read_named_spec(name_or_path: str | Path) -> dict[str, Any]:
    text = str(name_or_path)
    path = Path(text)
    looks_like_path = path.suffix == SPEC_SUFFIX or "/" in text or "\\" in text
    if looks_like_path:
        if not path.is_file():
            raise ValueError(
                f"spec file {text!r} not found; pass a catalog name "
                f"({', '.join(available_specs())}) or an existing .toml file"
            )
        return read_spec_file(path)
    catalog_path = catalog_dir() / f"{text}{SPEC_SUFFIX}"
    if not catalog_path.is_file():
        raise ValueError(
            f"unknown spec {text!r}; valid catalog names: "
            f"{', '.join(available_specs())} (or pass a path to a .toml file)"
        )
    return read_spec_file(catalog_path)


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def _apply_override(raw: dict[str, Any], override: str) -> None:
    key, sep, value = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(
            f"--set expects 'section.field=value', got {override!r}; "
            "for example --set entropy.k=5"
        )
    parts = key.split(".")
    table = raw
    for part in parts[:-1]:
        child = table.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(
                f"--set {override!r}: {part!r} is a value, not a table of fields"
            )
        table = child
    table[parts[-1]] = _parse_value(value.strip())


def _merge_defaults(schema: Any, raw: Any, prefix: str) -> Any:
    if schema is OPEN:
        if not isinstance(raw, dict):
            raise ValueError(f"spec field {prefix!r} must be a table, got {raw!r}")
        return copy.deepcopy(raw)
    if isinstance(schema, dict):
        if not isinstance(raw, dict):
            raise ValueError(f"spec field {prefix!r} must be a table, got {raw!r}")
        unknown = sorted(set(raw) - set(schema))
        if unknown:
            where = f"in [{prefix}]" if prefix else "at the top level"
            raise ValueError(
                f"unknown spec field(s) {unknown} {where}; valid fields: "
                f"{sorted(schema)}"
            )
        merged = {}
        for key, default in schema.items():
            path = f"{prefix}.{key}" if prefix else key
            if key in raw:
                merged[key] = _merge_defaults(default, raw[key], path)
            elif default is OPEN or isinstance(default, dict):
                merged[key] = _merge_defaults(default, {}, path)
            else:
                merged[key] = copy.deepcopy(default)
        return merged
    return copy.deepcopy(raw)


def _format_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_format_scalar(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} value {value!r} to TOML")


def _dump_table(table: Mapping[str, Any], path: list[str], lines: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
    tables = {k: v for k, v in table.items() if isinstance(v, Mapping)}
    if path:
        lines.append("")
        lines.append(f"[{'.'.join(path)}]")
    for key, value in scalars.items():
        lines.append(f"{key} = {_format_scalar(value)}")
    for key, value in tables.items():
        _dump_table(value, [*path, key], lines)
