"""Registering a configuration of an arch under its own name (UPS_S = UPS at width 44).

A preset has the base's full signature with some defaults changed, so option validation, type
coercion and the core's channel/scale injection work exactly as for the base.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


def _with_defaults(base: Callable[..., Any], defaults: dict[str, Any]) -> inspect.Signature:
    sig = inspect.signature(base, eval_str=True)
    unknown = set(defaults) - set(sig.parameters)
    if unknown:
        raise TypeError(f"{base.__name__} has no argument(s) {sorted(unknown)}")
    return sig.replace(parameters=[
        p.replace(default=defaults[p.name]) if p.name in defaults else p for p in sig.parameters.values()
    ])


def preset(base: Any, name: str, doc: str, module: str, **defaults: Any) -> Any:
    """A subclass (for a class) or a wrapper function (for a factory) of `base` with new defaults."""
    sig = _with_defaults(base, defaults)

    def bind(args: tuple, kwargs: dict) -> inspect.BoundArguments:
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        return bound

    if inspect.isclass(base):
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            bound = bind(args, kwargs)
            base.__init__(self, *bound.args, **bound.kwargs)

        self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
        __init__.__signature__ = sig.replace(parameters=[self_param, *sig.parameters.values()])
        return type(name, (base,), {"__init__": __init__, "__doc__": doc, "__module__": module, "__qualname__": name})

    def factory(*args: Any, **kwargs: Any) -> Any:
        bound = bind(args, kwargs)
        return base(*bound.args, **bound.kwargs)

    factory.__signature__ = sig
    factory.__name__ = factory.__qualname__ = name
    factory.__doc__, factory.__module__ = doc, module
    return factory
