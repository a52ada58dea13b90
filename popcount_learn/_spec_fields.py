"""Shared helpers of the spec dataclasses (``DatapathConfig``, ``LearningConfig``): strict
rebuilding from stored fields and typed overrides from text options."""

from __future__ import annotations

import dataclasses

from .errors import ConfigError


def strict_from_dict(cls, d: dict):
    """``cls(**d)`` when ``d`` names every field of ``cls`` and nothing else (no silent defaults:
    a stored spec that lacks a field would otherwise take today's default)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}")
    missing = names - set(d)
    if missing:
        raise ConfigError(f"{cls.__name__}: missing field(s) {sorted(missing)}")
    return cls(**d)


def typed_options(cls, options: dict | None, what: str) -> dict:
    """Text overrides such as {"time_shift": "8"} converted by each field's declared type.

    Integers accept a base prefix (``0x10``). An unknown field or a value that is not of the
    field's type is a ConfigError naming ``what`` (e.g. "datapath").
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    typed = {}
    for name, text in (options or {}).items():
        if name not in fields:
            raise ConfigError(f"unknown {what} field {name!r}; the fields are: {', '.join(fields)}")
        if fields[name].type == "int":
            typed[name] = _parse_int(text, f"{what} field {name}")
        else:
            typed[name] = str(text)
    return typed


def _parse_int(text, label: str) -> int:
    if not isinstance(text, str):
        return int(text)
    for base in (10, 0):  # "08" is decimal 8; "0x10" is 16
        try:
            return int(text, base)
        except ValueError:
            pass
    raise ConfigError(f"{label} takes an integer, got {text!r}")
