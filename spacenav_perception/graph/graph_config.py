"""The node graph as data: `config/*.yaml` -> node specs with resolved parameters (ROS-free).

One source of truth for which nodes run with which parameters. Read by the launch files
(`launch/*.launch.py`, through :func:`load_graph`) and by the in-process runner
(`spacenav run`, through :func:`resolve`).

File format::

    arguments:                      # launch arguments / `spacenav run ... name:=value`
      image_topic: {default: /camera/image_raw, description: Input image topic}
      use_centroid: {default: true, description: Start the centroid node}
    nodes:
      - name: centroid_node
        executable: centroid_node   # console script == key of NODE_CLASSES
        enabled_by: use_centroid    # optional: a bool argument that switches the node on/off
        parameters:
          image_topic: $(image_topic)
          min_confidence: 0.5       # literal values keep their YAML type

Typing rule (the same in the launch file and in :func:`resolve`): every argument has the type
of its YAML default (bool, int, float, str, or a non-empty list of one of those). A value
given on the command line / as a launch argument is text, converted to that type with YAML
rules (`true`/`false` for bools, `[1, 2]` for lists, `1` for a list means `[1]`); a str
argument takes the text as it is (so `''` stays an empty string). A parameter whose value is exactly `$(arg)` gets the argument's typed
value; a string with `$(arg)` inside other text (`$(ns)/image`) stays a string.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import yaml

PACKAGE = 'spacenav_perception'

# Console script / executable name -> 'module:Class' of the rclpy node (for the in-process runner).
NODE_CLASSES: Dict[str, str] = {
    'centroid_node': 'spacenav_perception.nodes.centroid_node:CentroidNode',
    'hazard_node': 'spacenav_perception.nodes.hazard_node:HazardNode',
    'passthrough_node': 'spacenav_perception.nodes.passthrough_node:PassthroughNode',
    'replay_node': 'spacenav_perception.nodes.replay_node:ReplayNode',
    'eval_node': 'spacenav_perception.nodes.eval_node:EvalNode',
}

_SUBST = re.compile(r'\$\(([A-Za-z_][A-Za-z0-9_]*)\)')
_SCALARS = (bool, int, float, str)


class GraphConfigError(ValueError):
    """The graph YAML is malformed, or an override does not fit it."""


@dataclass(frozen=True)
class Argument:
    name: str
    default: Any
    description: str

    @property
    def type(self):
        """bool, int, float, str, or ('list', item_type)."""
        return value_type(self.default)

    def default_text(self) -> str:
        """The default as launch-argument text (what `DeclareLaunchArgument` gets)."""
        return to_text(self.default)


@dataclass(frozen=True)
class NodeSpec:
    name: str
    executable: str
    enabled_by: Optional[str]
    parameters: Dict[str, Any] = field(default_factory=dict)   # raw, with $(arg) strings

    @property
    def node_class(self) -> str:
        return NODE_CLASSES[self.executable]


@dataclass(frozen=True)
class Graph:
    path: Path
    arguments: Dict[str, Argument]
    nodes: List[NodeSpec]


# ----------------------------------------------------------------------------- typing helpers

def value_type(value):
    """The type rule of a YAML default: bool/int/float/str or ('list', item_type)."""
    if isinstance(value, bool):
        return bool
    if isinstance(value, int):
        return int
    if isinstance(value, float):
        return float
    if isinstance(value, str):
        return str
    if isinstance(value, (list, tuple)) and value:
        item = value_type(value[0])
        if item in _SCALARS and all(value_type(v) is item for v in value):
            return ('list', item)
    raise GraphConfigError(f'unsupported argument default {value!r}: use a bool, int, float, '
                           'string or a non-empty list of one of those')


def to_text(value) -> str:
    """A typed value as argument text that :func:`from_text` (and launch) parse back."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (list, tuple)):
        return yaml.safe_dump(list(value), default_flow_style=True).strip()
    return str(value)


def from_text(value, typ, what: str = 'value'):
    """Convert argument text (or an already typed value) to `typ` (see the module doc)."""
    if isinstance(value, str) and typ is not str:
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise GraphConfigError(f'{what}: cannot parse {value!r} as {_type_name(typ)}') from exc
        if isinstance(typ, tuple) and not isinstance(value, list):
            value = [value]     # `name:=1` for a list argument means [1]
    if isinstance(typ, tuple):
        if isinstance(value, (list, tuple)):
            return [from_text(v, typ[1], what) for v in value]
    elif typ is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif isinstance(value, typ) and not (typ is int and isinstance(value, bool)):
        return value
    raise GraphConfigError(f'{what}: expected {_type_name(typ)}, got {value!r}')


def _type_name(typ) -> str:
    if typ is bool:
        return 'true or false'
    return f'list of {typ[1].__name__}' if isinstance(typ, tuple) else typ.__name__


def split_substitutions(value: str) -> List[Tuple[str, str]]:
    """'$(a)/x' -> [('arg', 'a'), ('text', '/x')]."""
    parts: List[Tuple[str, str]] = []
    pos = 0
    for match in _SUBST.finditer(value):
        if match.start() > pos:
            parts.append(('text', value[pos:match.start()]))
        parts.append(('arg', match.group(1)))
        pos = match.end()
    if pos < len(value):
        parts.append(('text', value[pos:]))
    return parts


def whole_argument(value) -> Optional[str]:
    """The argument name if `value` is exactly '$(name)', else None."""
    if isinstance(value, str):
        match = _SUBST.fullmatch(value.strip())
        if match:
            return match.group(1)
    return None


# ----------------------------------------------------------------------------- loading

def graph_path(config: Union[str, Path]) -> Path:
    """A path, or a bare name ('nav', 'nav.yaml') looked up in the package's config dir."""
    path = Path(config)
    if path.exists():
        return path
    if len(path.parts) == 1:
        from spacenav_perception.paths import config_path
        name = path.name if path.suffix in ('.yaml', '.yml') else path.name + '.yaml'
        candidate = config_path(name)
        if candidate.exists():
            return candidate
    raise GraphConfigError(f'graph config {config} not found (give a path or a name in config/)')


def load_graph(config: Union[str, Path]) -> Graph:
    path = graph_path(config)
    with open(path, encoding='utf-8') as handle:
        data = yaml.safe_load(handle) or {}
    if not isinstance(data, Mapping):
        raise GraphConfigError(f'{path}: top level must be a mapping')
    arguments: Dict[str, Argument] = {}
    for name, spec in (data.get('arguments') or {}).items():
        if not isinstance(spec, Mapping) or 'default' not in spec:
            raise GraphConfigError(f'{path}: argument {name!r} needs a mapping with default')
        arg = Argument(str(name), spec['default'], str(spec.get('description', '')))
        arg.type  # validates the default
        arguments[arg.name] = arg
    nodes: List[NodeSpec] = []
    for index, spec in enumerate(data.get('nodes') or []):
        where = f'{path}: nodes[{index}]'
        if not isinstance(spec, Mapping) or 'executable' not in spec:
            raise GraphConfigError(f'{where}: needs at least an executable')
        executable = str(spec['executable'])
        if executable not in NODE_CLASSES:
            raise GraphConfigError(f'{where}: unknown executable {executable!r} '
                                   f'(known: {", ".join(sorted(NODE_CLASSES))})')
        enabled_by = spec.get('enabled_by')
        if enabled_by is not None:
            if enabled_by not in arguments or arguments[enabled_by].type is not bool:
                raise GraphConfigError(f'{where}: enabled_by {enabled_by!r} must name a bool argument')
        parameters = dict(spec.get('parameters') or {})
        for pname, pvalue in parameters.items():
            for arg in _referenced(pvalue):
                if arg not in arguments:
                    raise GraphConfigError(f'{where}: parameter {pname!r} uses undeclared $({arg})')
        nodes.append(NodeSpec(str(spec.get('name', executable)), executable, enabled_by, parameters))
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise GraphConfigError(f'{path}: node names must be unique, got {names}')
    return Graph(path, arguments, nodes)


def _referenced(value) -> List[str]:
    if isinstance(value, str):
        return [m.group(1) for m in _SUBST.finditer(value)]
    return []


# ----------------------------------------------------------------------------- resolving

def argument_values(graph: Graph, overrides: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Typed argument values: defaults, replaced by `overrides` (text or typed)."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(graph.arguments))
    if unknown:
        raise GraphConfigError(f'unknown argument(s) {", ".join(unknown)} for {graph.path.name}; '
                               f'known: {", ".join(graph.arguments)}')
    values = {}
    for name, arg in graph.arguments.items():
        raw = overrides.get(name, arg.default)
        values[name] = from_text(raw, arg.type, f'argument {name}')
    return values


def resolve_value(value, values: Mapping[str, Any], graph: Graph):
    """One parameter value with its $(arg) references replaced (see the typing rule)."""
    arg = whole_argument(value)
    if arg is not None:
        typed = values[arg]
        return list(typed) if isinstance(typed, (list, tuple)) else typed
    if isinstance(value, str) and _SUBST.search(value):
        return ''.join(text if kind == 'text' else to_text(values[text])
                       for kind, text in split_substitutions(value))
    return value


def resolve(graph: Union[Graph, str, Path],
            overrides: Optional[Mapping[str, Any]] = None) -> List[Tuple[NodeSpec, Dict[str, Any]]]:
    """Enabled nodes with typed parameters, in file order."""
    if not isinstance(graph, Graph):
        graph = load_graph(graph)
    values = argument_values(graph, overrides)
    out = []
    for spec in graph.nodes:
        if spec.enabled_by is not None and not values[spec.enabled_by]:
            continue
        params = {name: resolve_value(v, values, graph) for name, v in spec.parameters.items()}
        out.append((spec, params))
    return out


def parse_overrides(items) -> Dict[str, str]:
    """['name:=value', ...] (launch syntax) -> {'name': 'value'}."""
    out = {}
    for item in items or []:
        if ':=' not in item:
            raise GraphConfigError(f'expected name:=value, got {item!r}')
        name, value = item.split(':=', 1)
        out[name.strip()] = value
    return out
