"""Replay + evaluation graph: the arguments and nodes of config/replay.yaml.

    ros2 launch spacenav_perception replay.launch.py bag:=/path/to/bag [use_hazard:=false
        wait_for_subscribers:=2] [device:=cuda] ...

The graph is not repeated here: config/replay.yaml (from the package share directory) is parsed
by spacenav_perception.graph.graph_config, the same code `spacenav run --config replay` uses.
One addition for launch: when the replay node exits (end of the bag, loop:=false), the whole
launch shuts down, so that the eval node writes its report and pictures - the counterpart of
`spacenav run --config replay --exit-when-done`.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import RegisterEventHandler, Shutdown
from launch.event_handlers import OnProcessExit

from spacenav_perception.graph.launch_description import graph_launch_description


def generate_launch_description():
    config = os.path.join(get_package_share_directory('spacenav_perception'), 'config',
                          'replay.yaml')
    description = graph_launch_description(config)
    replay = [action for action in description.entities
              if getattr(action, 'node_executable', None) == 'replay_node']
    for action in replay:
        description.add_action(RegisterEventHandler(OnProcessExit(
            target_action=action, on_exit=[Shutdown(reason='replay finished')])))
    return description
