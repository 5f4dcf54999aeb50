"""Options declared once, as dataclass fields (type, default, allowed values, help); checks, CLI flags and schemas derive from them.

A task's options and the training configuration are dataclasses whose fields are made with
`option(...)`. From that one declaration:

* `check(obj)` validates every value (type, allowed values, range, finite numbers) and raises an
  `OptionError` naming the option, which each front end renders in its own words (the parameter
  for Python, the flag for the CLI, the field for the server);
* `add_flags(parser, cls)` adds one argparse flag per field, with its type, choices, default and help;
* `specs(cls)` describes the fields for the server's request schemas (bertkit.serve.schemas).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import numbers
import types
import typing
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, Union

from bertkit.errors import OptionError

__all__ = ["REQUIRED", "Options", "Spec", "add_flags", "check", "flag_name", "from_args", "option", "specs"]


REQUIRED: Any = dataclasses.MISSING  # option(REQUIRED, ...): the caller must give a value


def option(
    default: Any,
    help: str = "",
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    short: str | None = None,
    metavar: str | None = None,
    default_help: str | None = None,
    split: str | None = None,
    cli: bool = True,
    server: bool = True,
    shared: bool = True,
    kw_only: bool = False,
    positional: bool = False,
) -> Any:
    """A dataclass field that is also a user-facing option.

    `ge`/`gt`/`le`/`lt` bound numbers (and every number in a list). `default_help` says in words
    what a default of None means ("the model's setting"). `split` lets one CLI flag carry several
    values ("a,b"). `cli` / `server`: whether the command line / the server offer it. `shared`:
    whether requests must agree on it to share a model batch (the server's micro-batcher); an
    option that only shapes one request's answer is not shared. `kw_only`: keyword-only in Python,
    listed after the others (options a base class adds to every task's own). `positional`: a command
    line argument before the texts (`bertkit search INDEX QUERY...`) rather than a flag.
    """
    meta = {"help": help, "ge": ge, "gt": gt, "le": le, "lt": lt, "short": short, "metavar": metavar,
            "default_help": default_help, "split": split, "cli": cli, "server": server, "shared": shared,
            "positional": positional}
    if default is REQUIRED:
        return dataclasses.field(metadata={"bertkit": meta}, kw_only=kw_only)
    return dataclasses.field(default=default, metadata={"bertkit": meta}, kw_only=kw_only)


@dataclass(frozen=True)
class Spec:
    """One option as every front end sees it."""

    name: str
    annotation: Any
    default: Any
    help: str
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    short: str | None = None
    metavar: str | None = None
    default_help: str | None = None
    split: str | None = None
    cli: bool = True
    server: bool = True
    shared: bool = True
    kw_only: bool = False
    positional: bool = False

    @property
    def flag(self) -> str:
        return flag_name(self.name)

    @property
    def choices(self) -> tuple | None:
        """The allowed strings, when the option is (or includes) a Literal."""
        found = [a for a in _flatten(self.annotation) if typing.get_origin(a) is Literal]
        return tuple(v for lit in found for v in typing.get_args(lit)) or None

    @property
    def bounds(self) -> dict[str, float]:
        return {k: v for k, v in (("ge", self.ge), ("gt", self.gt), ("le", self.le), ("lt", self.lt)) if v is not None}

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def describe_default(self) -> str | None:
        if self.default_help:
            return self.default_help
        if self.required or self.default is None or self.default is False:
            return None
        return str(self.default)


def flag_name(param: str) -> str:
    """The command-line flag of a parameter: `max_length` -> `--max-length`."""
    return "--" + param.replace("_", "-")


class Options:
    """Base of option dataclasses: every instance is checked when made (and when `dataclasses.replace`d)."""

    def __post_init__(self) -> None:
        check(self)


@lru_cache(maxsize=None)
def specs(cls: type) -> tuple[Spec, ...]:
    """The option fields of a dataclass, with their resolved types: its own in declaration order, then keyword-only ones."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get("bertkit")
        if meta is None:
            continue
        out.append(Spec(f.name, hints[f.name], f.default, **{**meta, "kw_only": bool(f.kw_only)}))
    return tuple(sorted(out, key=lambda s: s.kw_only))


def spec_of(cls: type, name: str) -> Spec:
    return next(s for s in specs(cls) if s.name == name)


# -- checking -------------------------------------------------------------------------------------
def check(obj: Any) -> None:
    """Validate every option of a dataclass instance; raise OptionError for the first bad one."""
    for spec in specs(type(obj)):
        check_value(spec, getattr(obj, spec.name))


def check_value(spec: Spec, value: Any) -> None:
    if not _conforms(spec.annotation, value):
        raise OptionError(spec.name, f"must be {_describe(spec.annotation)}, not {_shown(value)}")
    for number in _numbers(value):
        if isinstance(number, float) and not math.isfinite(number):
            raise OptionError(spec.name, f"must be a finite number, not {_shown(value)}")
        for key, bound in spec.bounds.items():
            ok = {"ge": number >= bound, "gt": number > bound, "le": number <= bound, "lt": number < bound}[key]
            if not ok:
                words = {"ge": "at least", "gt": "more than", "le": "at most", "lt": "less than"}[key]
                raise OptionError(spec.name, f"must be {words} {_number(bound)}, not {_shown(value)}")


def _flatten(tp: Any) -> list:
    if typing.get_origin(tp) in (Union, types.UnionType):
        return [x for a in typing.get_args(tp) for x in _flatten(a)]
    return [tp]


def _conforms(tp: Any, value: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(_conforms(a, value) for a in typing.get_args(tp))
    if origin is Literal:
        return any(type(value) is type(v) and value == v for v in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        (item,) = typing.get_args(tp)[:1] or (Any,)
        return isinstance(value, (list, tuple)) and all(_conforms(item, v) for v in value)
    return isinstance(value, tp)


def _describe(tp: Any) -> str:
    parts = [a for a in _flatten(tp) if a is not type(None)]
    words = []
    for a in parts:
        origin = typing.get_origin(a)
        if origin is Literal:
            words.append("one of " + ", ".join(map(str, typing.get_args(a))))
        elif origin in (list, tuple):
            words.append(f"a list of {_describe(typing.get_args(a)[0]).removeprefix('a ')}s")
        else:
            words.append({bool: "true or false", int: "a whole number", float: "a number", str: "a text"}.get(a, str(a)))
    return " or ".join(words)


def _numbers(value: Any) -> list:
    if isinstance(value, bool):
        return []
    if isinstance(value, numbers.Real):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, numbers.Real) and not isinstance(v, bool)]
    return []


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


# -- the command line -------------------------------------------------------------------------------
def add_flags(parser: argparse.ArgumentParser | Any, cls: type, *, skip: tuple[str, ...] = (),
              suppress: bool = False) -> None:
    """One flag per option of `cls` (not those in `skip` or declared cli=False).

    With `suppress`, flags the user did not give are absent from the parsed namespace (so a caller
    can tell "given" from "defaulted", as `bertkit train --resume` must).
    """
    for spec in specs(cls):
        if not spec.cli or spec.name in skip or spec.positional:
            continue
        names = [spec.flag] + ([spec.short] if spec.short else [])
        shown = spec.describe_default()
        kw: dict[str, Any] = {"dest": spec.name, "help": spec.help + (f" (default: {shown})" if shown else "")}
        scalar, many = _cli_shape(spec.annotation)
        # A repeatable flag appends to its default: a list one starts from nothing, and the declared default
        # (a scalar such as occurrence=0) comes from the dataclass when the flag is absent.
        kw["default"] = argparse.SUPPRESS if suppress or spec.required or many else spec.default
        if spec.required:
            kw["required"] = True
        if scalar is bool and not many:
            kw["action"] = "store_true" if spec.default is False else argparse.BooleanOptionalAction
        else:
            kw["type"] = _parser_for(spec, scalar)
            only_choices = all(typing.get_origin(k) is Literal for k in _flatten(scalar))
            kw["metavar"] = spec.metavar or (_choices_metavar(spec) if only_choices else None)
            if many:
                kw["action"] = "append"
        if kw.get("metavar") is None:
            kw.pop("metavar", None)
        parser.add_argument(*names, **kw)


def from_args(cls: type, args: argparse.Namespace, **extra: Any) -> Any:
    """An options instance from the parsed flags (plus `extra`), checked."""
    values = dict(extra)
    for spec in specs(cls):
        if spec.name in values or not hasattr(args, spec.name):
            continue
        value = getattr(args, spec.name)
        scalar, many = _cli_shape(spec.annotation)
        if many and isinstance(value, list):
            value = [v for part in value for v in (part if isinstance(part, list) else [part])]
            if _accepts_scalar(spec.annotation) and len(value) == 1:
                value = value[0]  # `--word bank` means one word for every sentence, as word="bank" does
        values[spec.name] = value
    return cls(**values)


def _cli_shape(tp: Any) -> tuple[Any, bool]:
    """(the scalar type a flag parses, whether the flag may repeat)."""
    parts = [a for a in _flatten(tp) if a is not type(None)]
    many = any(typing.get_origin(a) in (list, tuple) for a in parts)
    scalars = [typing.get_args(a)[0] if typing.get_origin(a) in (list, tuple) else a for a in parts]
    scalar = Union[tuple(scalars)] if len(set(scalars)) > 1 else scalars[0]
    return scalar, many


def _accepts_scalar(tp: Any) -> bool:
    return any(typing.get_origin(a) not in (list, tuple) and a is not type(None) for a in _flatten(tp))


def _choices_metavar(spec: Spec) -> str:
    return "{" + ",".join(map(str, spec.choices)) + "}"


def _parser_for(spec: Spec, scalar: Any):
    kinds = _flatten(scalar)

    def parse(text: str) -> Any:
        values = [p.strip() for p in text.split(spec.split) if p.strip()] if spec.split else [text]
        out = [_parse_one(v) for v in values]
        return out if spec.split else out[0]

    def _parse_one(text: str) -> Any:
        for kind in kinds:
            if kind is int:
                try:
                    return int(text)
                except ValueError:
                    continue
            if kind is float:
                try:
                    value = float(text)
                except ValueError:
                    continue
                if not math.isfinite(value):
                    raise argparse.ArgumentTypeError(f"must be a finite number, not {text!r}")
                return value
            if typing.get_origin(kind) is Literal:
                if text in typing.get_args(kind):
                    return text
                continue
            if kind is str:
                return text
        raise argparse.ArgumentTypeError(f"must be {_describe(scalar)}, not {text!r}")

    parse.__name__ = _describe(scalar)  # argparse names the type in its own messages
    return parse
