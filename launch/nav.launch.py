"""Navigation perception graph: the arguments and nodes of config/nav.yaml.

    ros2 launch spacenav_perception nav.launch.py [device:=cuda] [use_hazard:=false] ...

The graph is not repeated here: config/nav.yaml (from the package share directory) is parsed
by spacenav_perception.graph.graph_config, the same code `spacenav run --config nav` uses;
spacenav_perception.graph.launch_description maps it onto DeclareLaunchArgument and
launch_ros.actions.Node.
"""
import os

from ament_index_python.packages import get_package_share_directory

from spacenav_perception.graph.launch_description import graph_launch_description


def generate_launch_description():
    config = os.path.join(get_package_share_directory('spacenav_perception'), 'config', 'nav.yaml')
    return graph_launch_description(config)
