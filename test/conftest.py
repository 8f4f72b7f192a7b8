"""Test-wide settings: DDS stays on this machine and every test run gets its own domain.

This runs before any test module imports rclpy, so the environment reaches the DDS layer and
every subprocess a test starts inherits it.
"""
import os

# A test-specific domain (from the pid, so parallel runs on one machine do not cross-talk),
# and discovery limited to localhost: the default range sends multicast off the machine.
os.environ['ROS_DOMAIN_ID'] = str(1 + os.getpid() % 100)
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
