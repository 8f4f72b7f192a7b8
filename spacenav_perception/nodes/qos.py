"""Image QoS from the `qos_reliability` / `qos_depth` parameters; output QoS.

Default: sensor-data style (best effort, keep last 1, volatile) like
rclpy.qos.qos_profile_sensor_data but with depth 1, so a slow consumer sees the newest frame.
A `reliable` subscription still matches best-effort and reliable publishers; a `best_effort`
one matches both too (a reliable publisher then delivers best effort).
"""
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from .params import NodeConfigError, choice, declare

RELIABILITY = {'best_effort': ReliabilityPolicy.BEST_EFFORT, 'reliable': ReliabilityPolicy.RELIABLE}


def image_qos(reliability: str = 'best_effort', depth: int = 1) -> QoSProfile:
    """QoS profile for image topics: keep last `depth`, volatile, `reliability`."""
    policy = RELIABILITY[choice('qos_reliability', reliability, tuple(RELIABILITY))]
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise NodeConfigError(f'parameter qos_depth={depth!r} must be a whole number >= 1')
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=policy,
                      durability=DurabilityPolicy.VOLATILE)


def output_qos(depth: int = 1) -> QoSProfile:
    """QoS for the nodes' outputs: reliable, keep last `depth`, volatile.

    A reliable publisher serves reliable AND best-effort subscribers (a best-effort publisher
    cannot serve reliable ones, e.g. default RViz / ros2 topic echo settings); with keep-last
    history it never blocks the node on a slow subscriber.
    """
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(1, int(depth)),
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def declare_image_qos(node) -> QoSProfile:
    """Declare qos_reliability and qos_depth on `node` and return the image QoS profile."""
    reliability = declare(node, 'qos_reliability', 'best_effort',
                          'Image topic reliability: best_effort (sensor data, drops under load) '
                          'or reliable')
    depth = declare(node, 'qos_depth', 1, 'Image topic queue depth (history keep last N)')
    return image_qos(reliability, depth)
