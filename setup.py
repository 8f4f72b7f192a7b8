"""ament_python package setup: `colcon build` on a ROS install, `pip install -e .` here."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'spacenav_perception'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(include=[PACKAGE, PACKAGE + '.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', glob('launch/*.launch.py')),
        ('share/' + PACKAGE + '/config', glob('config/*.yaml')),
        ('share/' + PACKAGE + '/models', glob('models/*')),
    ],
    install_requires=['setuptools'],
    zip_safe=False,
    maintainer='spacenav_perception maintainers',
    maintainer_email='maintainers@spacenav-perception.invalid',
    description='Learned optical-navigation perception (centroid, hazard segmentation) for ROS 2.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'spacenav = spacenav_perception.cli:main',
            'centroid_node = spacenav_perception.nodes.centroid_node:main',
            'hazard_node = spacenav_perception.nodes.hazard_node:main',
            'replay_node = spacenav_perception.nodes.replay_node:main',
            'eval_node = spacenav_perception.nodes.eval_node:main',
            'passthrough_node = spacenav_perception.nodes.passthrough_node:main',
        ],
    },
)
