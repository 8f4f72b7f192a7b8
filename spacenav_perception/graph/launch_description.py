"""config/*.yaml graph -> launch.LaunchDescription (used by launch/*.launch.py).

Kept next to graph_config so that every launch file is three lines and the YAML -> launch
mapping lives in one place. Needs `launch` / `launch_ros` (a ROS install); importing this
module without them fails with ImportError, which is fine: only launch files import it.

Mapping:
- every argument -> DeclareLaunchArgument(name, default_value=<text>, description=...)
- every node -> launch_ros.actions.Node(package, executable, name, parameters=[{...}],
  condition=IfCondition(LaunchConfiguration(enabled_by)) when the node has `enabled_by`)
- a parameter that is exactly `$(arg)` -> ParameterValue(LaunchConfiguration(arg),
  value_type=<the argument's type>), so '' stays a string and 'true' a bool, exactly as
  graph_config.resolve() types it; `text $(arg) text` -> a string of substitutions;
  literal values are passed through.
"""
from pathlib import Path
from typing import List, Union

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from spacenav_perception.graph.graph_config import (PACKAGE, Graph, load_graph,
                                                    split_substitutions, whole_argument)


def _launch_type(arg_type):
    if isinstance(arg_type, tuple):
        return List[arg_type[1]]
    return arg_type


def _parameter(value, graph: Graph):
    arg = whole_argument(value)
    if arg is not None:
        return ParameterValue(LaunchConfiguration(arg),
                              value_type=_launch_type(graph.arguments[arg].type))
    if isinstance(value, str) and any(kind == 'arg' for kind, _ in split_substitutions(value)):
        parts = [LaunchConfiguration(text) if kind == 'arg' else text
                 for kind, text in split_substitutions(value)]
        return ParameterValue(parts, value_type=str)
    return value


def graph_launch_description(config: Union[str, Path]) -> LaunchDescription:
    """LaunchDescription for a graph file: a path, or a name in the package's config/ dir
    (the ament share directory on a ROS install)."""
    graph = load_graph(_config_file(config))
    actions = [DeclareLaunchArgument(arg.name, default_value=arg.default_text(),
                                     description=arg.description)
               for arg in graph.arguments.values()]
    for spec in graph.nodes:
        condition = IfCondition(LaunchConfiguration(spec.enabled_by)) if spec.enabled_by else None
        actions.append(Node(
            package=PACKAGE,
            executable=spec.executable,
            name=spec.name,
            output='screen',
            emulate_tty=True,
            parameters=[{name: _parameter(value, graph)
                         for name, value in spec.parameters.items()}],
            condition=condition,
        ))
    return LaunchDescription(actions)


def _config_file(config: Union[str, Path]) -> Path:
    path = Path(config)
    if path.is_absolute() or path.exists():
        return path
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory(PACKAGE)) / 'config' / path.name
    except Exception:   # not installed through colcon: the checkout's config/
        from spacenav_perception.paths import config_path
        return config_path(path.name)
