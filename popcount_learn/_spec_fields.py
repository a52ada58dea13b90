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


def field_codes(obj, names: tuple[str, ...] | None = None) -> tuple[int, ...]:
    """The fields ``names`` (default: all, in declaration order) as integers: string fields by
    ``type(obj).ENUM_CODES[field]``, integers as they are. This is how a board reports a spec."""
    enums = type(obj).ENUM_CODES
    names = names or tuple(f.name for f in dataclasses.fields(obj))
    return tuple(enums[n][getattr(obj, n)] if n in enums else int(getattr(obj, n)) for n in names)


def from_field_codes(cls, codes, names: tuple[str, ...] | None = None):
    """Inverse of ``field_codes``; a wrong count or an unknown code is a ConfigError."""
    names = names or tuple(f.name for f in dataclasses.fields(cls))
    codes = tuple(codes)
    if len(codes) != len(names):
        raise ConfigError(f"{cls.__name__}: expected {len(names)} field codes, got {len(codes)}")
    values = {}
    for name, code in zip(names, codes, strict=True):
        if name in cls.ENUM_CODES:
            by_code = {v: k for k, v in cls.ENUM_CODES[name].items()}
            if int(code) not in by_code:
                raise ConfigError(f"{cls.__name__}: {name} code {code} is none of {sorted(by_code)}")
            values[name] = by_code[int(code)]
        else:
            values[name] = int(code)
    return strict_from_dict(cls, values)
