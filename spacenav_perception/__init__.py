"""spacenav_perception: learned optical-navigation perception for ROS 2."""
__version__ = '0.1.0'
