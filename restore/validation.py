"""Check an option block against the signature of the class or function it configures.

Plugin option blocks (``network_g``, ``task``, ``pixel_opt``, metrics, sharing, ...) are validated
by the same machinery as the core's: unknown keys are named with their full path and the closest
known key, missing required keys are named, and values are coerced to annotated types.

Annotations are read as an option file means them: ``true`` is not a number (Python's bools are
ints, YAML's are not), an ``int`` takes ``5e5`` but not ``2.5``, constraints written
``Annotated[int, Field(ge=1)]`` are enforced, and ``Iterable[int]`` (torch's ``milestones``) is
checked element by element as a list. A value the target's constructor itself refuses
(``Adam(lr=-1)``) becomes an `OptionError` naming the block.
"""

from __future__ import annotations

import collections.abc as abc
import contextlib
import contextvars
import inspect
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from typing import Annotated, Any, Union

from pydantic import BeforeValidator, ConfigDict, Field, PydanticUserError, TypeAdapter, ValidationError

from restore.errors import OptionError, RestoreError, did_you_mean

# Keys whose null value (`sharing: ~`) means "as if not given": the constructor's default, not None.
NULL_MEANS_DEFAULT = frozenset({"sharing"})

# The option path of the block whose target is being constructed (see `option_path`).
_building: contextvars.ContextVar[str | None] = contextvars.ContextVar("_building", default=None)


def option_path(key: str | None = None) -> str:
    """The option path of the block being built right now, optionally joined with `key`.

    While `call_with_options` (or `build_network`) constructs a target, this is the block's path
    (``network_g``, ``network_g.sharing``, ``network_g.sharing.rules.1.scheme``), so code running
    inside a constructor names its options in errors without hard-coding where the block sits.
    Outside any construction it is `key` alone.
    """
    current = _building.get()
    if key is None:
        return current or ""
    return f"{current}.{key}" if current else key


@contextlib.contextmanager
def building(path: str) -> Iterator[None]:
    """Mark `path` as the block whose target is being constructed (for `option_path`)."""
    token = _building.set(path)
    try:
        yield
    finally:
        _building.reset(token)


# Names annotations commonly use without importing them at run time (`if TYPE_CHECKING:` imports,
# e.g. torch's ``milestones: Iterable[int]``).
_TYPING_NAMES = {name: getattr(typing, name) for name in typing.__all__} | {
    name: getattr(abc, name) for name in abc.__all__}


@cache
def _signature(target: Callable[..., Any]) -> inspect.Signature:
    func = target.__init__ if inspect.isclass(target) else target
    sig = inspect.signature(func)
    params = [p.replace(annotation=_resolve(p.annotation, func)) for p in sig.parameters.values()
              if p.name not in ("self", "cls")]
    return sig.replace(parameters=params)


def _resolve(annotation: Any, func: Callable[..., Any]) -> Any:
    """A string annotation evaluated in `func`'s module (typing names as a fallback); unresolvable
    ones are dropped, so that parameter is checked by name only."""
    if not isinstance(annotation, str):
        return annotation
    namespace = getattr(inspect.unwrap(func), "__globals__", {})
    try:
        return eval(annotation, _TYPING_NAMES, dict(namespace))  # noqa: S307 - annotations of registered code
    except Exception:
        return inspect.Parameter.empty


def _refuse_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("true/false is not a number")
    return value


# Non-finite floats are refused too: no option means NaN, and an infinite rate or factor only diverges.
_NUMBER = {int: Annotated[int, BeforeValidator(_refuse_bool)],
           float: Annotated[float, BeforeValidator(_refuse_bool), Field(allow_inf_nan=False)]}
# Abstract containers pydantic validates lazily (a generator wrapper that checks nothing until
# iterated): options are data, so they are validated eagerly as lists.
_LAZY = {abc.Iterable, abc.Iterator, abc.Collection, abc.Generator}


def _as_option_type(annotation: Any) -> Any:
    """`annotation` rewritten for option values: numbers refuse bools, lazy iterables become lists."""
    if annotation in _NUMBER:
        return _NUMBER[annotation]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is None or not args:
        return list if annotation in _LAZY or origin in _LAZY else annotation
    if origin is Annotated:
        return Annotated[(_as_option_type(args[0]), *annotation.__metadata__)]
    if origin in (Union, types.UnionType):
        return Union[tuple(_as_option_type(a) for a in args)]  # noqa: UP007 - built from a tuple
    if origin is typing.Literal or origin in (abc.Callable, type):
        return annotation
    converted = tuple(a if a is Ellipsis else _as_option_type(a) for a in args)
    if origin in _LAZY:
        return list[converted[0]]
    try:
        return origin[converted]
    except TypeError:  # an origin that cannot be subscripted again: validate as written
        return annotation


@cache
def _adapter(annotation: Any) -> TypeAdapter | None:
    try:
        return TypeAdapter(_as_option_type(annotation), config=ConfigDict(arbitrary_types_allowed=True))
    except Exception:
        return None


def _type_text(annotation: Any) -> str:
    """`annotation` as a reader writes it: ``int``, ``int >= 1``, ``list[int]``, ``str | None``."""
    if typing.get_origin(annotation) is Annotated:
        bounds = [_bound_text(m) for m in annotation.__metadata__ for m in getattr(m, "metadata", [m])]
        bounds_text = " and ".join(b for b in bounds if b)
        return f"{_type_text(typing.get_args(annotation)[0])} {bounds_text}".rstrip()
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return " | ".join(_type_text(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("collections.abc.", "").replace("NoneType", "None")


_BOUNDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def _bound_text(constraint: Any) -> str | None:
    """``>= 1`` for pydantic's/annotated-types' Ge(1) and friends; None for other metadata."""
    for attr, op in _BOUNDS.items():
        if type(constraint).__name__.lower() == attr and hasattr(constraint, attr):
            return f"{op} {getattr(constraint, attr)}"
    return None


# The largest count (channels, blocks, sizes) an unannotated int option takes: far beyond any network
# that fits in memory, and small enough that a typo is refused instead of building for hours.
MAX_COUNT = 100_000


def types_from_defaults(target: Callable[..., Any]) -> dict[str, Any]:
    """Option types for the unannotated parameters of code we register but do not own, read off their
    defaults: a non-negative int default makes an int in 0..MAX_COUNT, a float a finite float, a flag a
    bool, a tuple/list a list, a string a string (pass the result as ``option_types``)."""
    types: dict[str, Any] = {}
    for name, param in inspect.signature(target.__init__ if inspect.isclass(target) else target).parameters.items():
        default = param.default
        if param.annotation is not param.empty or default is param.empty or default is None:
            continue
        if isinstance(default, bool):
            types[name] = bool
        elif isinstance(default, int) and default >= 0:
            types[name] = Annotated[int, Field(ge=0, le=MAX_COUNT)]
        elif isinstance(default, float):
            types[name] = float  # finite: see _NUMBER
        elif isinstance(default, (tuple, list)):
            types[name] = list
        elif isinstance(default, str):
            types[name] = str
    return types


def accepted_keys(target: Callable[..., Any]) -> tuple[list[str], bool]:
    """Names `target` accepts as keywords, and whether it also takes ``**kwargs``."""
    sig = _signature(target)
    names = [p.name for p in sig.parameters.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    open_ended = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    return names, open_ended


def check_options(
    target: Callable[..., Any],
    options: Mapping[str, Any],
    path: str,
    provided: Mapping[str, Any] | None = None,
    sibling_keys: tuple[str, ...] = (),
    option_types: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Validate `options` as keyword arguments of `target`; return them coerced to annotated types.

    `provided` are keywords the caller supplies itself (not from the option file); they count as
    present for the required-key check and are not accepted from the file. `sibling_keys` are other
    valid keys of the same block (handled by the caller), offered as suggestions for typos.
    `option_types` annotate parameters of code we register but do not own (torch's schedulers,
    basicsr's archs) more precisely than its own signature does; they take precedence.
    """
    sig = _signature(target)
    names, open_ended = accepted_keys(target)
    name = getattr(target, "__name__", str(target))
    out: dict[str, Any] = {}
    settable = [n for n in names if n not in (provided or {})]
    for key, value in options.items():
        if key not in settable:
            if open_ended and key not in names:
                out[key] = value
                continue
            raise OptionError(
                f"{path}.{key}: unknown option for {name}.{did_you_mean(key, [*settable, *sibling_keys])} "
                f"Accepted options: {', '.join([*sibling_keys, *settable]) or '(none)'}."
            )
        param = sig.parameters[key]
        if option_types and key in option_types:
            param = param.replace(annotation=option_types[key])
        if value is None and key in NULL_MEANS_DEFAULT and param.default is not param.empty:
            continue
        out[key] = _coerce(param, value, f"{path}.{key}")
    supplied = set(out) | set(provided or {})
    missing = [
        p.name
        for p in sig.parameters.values()
        if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in supplied
    ]
    if missing:
        raise OptionError(f"{path}: missing required option(s) for {name}: {', '.join(missing)}.")
    return out


def _coerce(param: inspect.Parameter, value: Any, path: str) -> Any:
    if param.annotation is param.empty or value is None and param.default is None:
        return value
    adapter = _adapter(param.annotation)
    if adapter is None:
        return value
    try:
        coerced = adapter.validate_python(value)
    except PydanticUserError:  # annotation pydantic cannot build a validator for: accept as given
        return value
    except ValidationError as exc:
        raise OptionError(_validation_message(exc, param.annotation, value, path)) from None
    # Keep plain data (e.g. "2e-4" -> 0.0002, [1, 2] -> (1, 2)); pydantic turns some annotations
    # (Callable, arbitrary classes) into wrappers the target does not expect.
    return coerced if isinstance(coerced, (int, float, str, tuple, list, dict)) else value


def _validation_message(exc: ValidationError, annotation: Any, value: Any, path: str) -> str:
    errors = exc.errors()
    # `float | Tensor`: "not an instance of Tensor" says nothing an option file can act on
    errors = [e for e in errors if e["type"] != "is_instance_of"] or errors
    expected = _type_text(annotation)
    if len(errors) == 1:  # one reason: name the element it concerns (``milestones.0``)
        error = errors[0]
        msg = error["msg"].removeprefix("Value error, ")
        msg = msg[:1].lower() + msg[1:]
        # union members appear in `loc` as validator descriptions: keep the keys and indices only
        loc = [part for part in error["loc"] if isinstance(part, int) or str(part).isidentifier()]
        if loc:
            where = "".join(f".{part}" for part in loc)
            return f"{path}{where}: {msg}, got {error['input']!r} ({path} is {expected})."
        return f"{path}: expected {expected}, got {value!r} ({msg})."
    reasons = "; ".join(dict.fromkeys(e["msg"].removeprefix("Value error, ") for e in errors))
    return f"{path}: expected {expected}, got {value!r} ({reasons})."


def call_with_options(target: Callable[..., Any], options: Mapping[str, Any], path: str, *,
                      option_types: Mapping[str, Any] | None = None, **provided: Any) -> Any:
    """Validate `options` for `target`, then call it with them plus `provided`.

    A ValueError, TypeError, AssertionError or RuntimeError raised by the call (``Adam(lr=-1)``: "Invalid
    learning rate") becomes an OptionError naming `path` and the target's own message.
    """
    kwargs = check_options(target, options, path, provided, option_types=option_types)
    return construct(target, kwargs, path, **provided)


def construct(target: Callable[..., Any], kwargs: Mapping[str, Any], path: str, **provided: Any) -> Any:
    """Call `target` with already checked `kwargs` as the block at `path` (see `call_with_options`)."""
    try:
        with building(path):
            return target(**kwargs, **provided)
    except RestoreError:
        raise
    except (ValueError, TypeError, AssertionError, RuntimeError) as exc:  # RuntimeError: torch's own refusals
        name = getattr(target, "__name__", type(target).__name__)
        reason = " ".join(str(exc).split()) or type(exc).__name__
        given = ", ".join(f"{k}={_short_repr(v)}" for k, v in kwargs.items())
        raise OptionError(f"{path}: {name} refused its options ({given or 'none given'}): {reason}") from exc


def _short_repr(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
