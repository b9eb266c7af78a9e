"""Check an option block against the signature of the class or function it configures.

Plugin option blocks (``network_g``, ``task``, ``pixel_opt``, metrics, sharing, ...) are validated
by the same machinery as the core's: unknown keys are named with their full path and the closest
known key, missing required keys are named, and values are coerced to annotated types.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from pydantic import ConfigDict, PydanticUserError, TypeAdapter, ValidationError

from restore.errors import OptionError, did_you_mean


@cache
def _signature(target: Callable[..., Any]) -> inspect.Signature:
    func = target.__init__ if inspect.isclass(target) else target
    try:
        sig = inspect.signature(func, eval_str=True)
    except Exception:  # unresolvable annotations: validate names only
        sig = inspect.signature(func)
    params = [p for p in sig.parameters.values() if p.name not in ("self", "cls")]
    return sig.replace(parameters=params)


@cache
def _adapter(annotation: Any) -> TypeAdapter | None:
    try:
        return TypeAdapter(annotation, config=ConfigDict(arbitrary_types_allowed=True))
    except Exception:
        return None


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
) -> dict[str, Any]:
    """Validate `options` as keyword arguments of `target`; return them coerced to annotated types.

    `provided` are keywords the caller supplies itself (not from the option file); they count as
    present for the required-key check and are not accepted from the file. `sibling_keys` are other
    valid keys of the same block (handled by the caller), offered as suggestions for typos.
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
        out[key] = _coerce(sig.parameters[key], value, f"{path}.{key}")
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
        first = exc.errors()[0]
        expected = getattr(param.annotation, "__name__", None) or str(param.annotation).replace("typing.", "")
        raise OptionError(f"{path}: expected {expected}, got {value!r} ({first['msg']}).") from None
    # Keep plain data (e.g. "2e-4" -> 0.0002, [1, 2] -> (1, 2)); pydantic turns some annotations
    # (Iterable, Callable) into lazy wrappers the target does not expect.
    return coerced if isinstance(coerced, (int, float, str, tuple, list, dict)) else value


def call_with_options(target: Callable[..., Any], options: Mapping[str, Any], path: str, **provided: Any) -> Any:
    """Validate `options` for `target`, then call it with them plus `provided`."""
    kwargs = check_options(target, options, path, provided)
    return target(**kwargs, **provided)
