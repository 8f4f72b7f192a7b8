"""Declaring node parameters (with descriptions) and reporting bad values at start-up.

Every parameter is read once, at start-up: the per-frame path never calls get_parameter.
Parameters are therefore declared read-only, so `ros2 param set` says plainly that a change
needs a restart instead of silently doing nothing.
"""
from rcl_interfaces.msg import ParameterDescriptor


class NodeConfigError(ValueError):
    """A parameter value a node cannot start with. The message names the parameter."""


def declare(node, name: str, default, description: str, *, read_only: bool = True):
    """Declare `name` with `default` and `description`; return its value (the override if set)."""
    descriptor = ParameterDescriptor(description=description, read_only=read_only)
    return node.declare_parameter(name, default, descriptor).value


def choice(name: str, value: str, allowed) -> str:
    """`value` lower-cased if it is one of `allowed`, else NodeConfigError naming the parameter."""
    text = str(value).strip().lower()
    if text not in allowed:
        raise NodeConfigError(f'parameter {name}={value!r} is not one of {", ".join(allowed)}')
    return text
