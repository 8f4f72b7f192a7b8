"""Keep DDS discovery on this machine unless the user chose otherwise."""
import os


def ensure_local_dds(domain_id=None):
    """Default ROS_AUTOMATIC_DISCOVERY_RANGE to LOCALHOST and optionally set ROS_DOMAIN_ID.

    Values the user already exported are left untouched. Must run before rclpy.init().
    """
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    if domain_id is not None:
        os.environ.setdefault('ROS_DOMAIN_ID', str(domain_id))
