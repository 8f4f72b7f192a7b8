"""passthrough_node: republish every processed image unchanged (the benchmark floor).

Same subscription, QoS, latest-frame worker, decoding/validation and /diagnostics as the
perception nodes, no model: the cost of the ROS plumbing alone.

Subscribes: image_topic (sensor_msgs/Image, or CompressedImage with image_transport:=compressed)
Publishes: output_topic (the same Image; a compressed frame decoded into one)
"""
from sensor_msgs.msg import Image

from spacenav_perception.graph.runner import run_node

from .image_node import ImageNode
from .params import declare


class PassthroughNode(ImageNode):
    DEFAULT_NAME = 'passthrough_node'

    def __init__(self, **kwargs):
        super().__init__(self.DEFAULT_NAME, task='passthrough', **kwargs)
        output_topic = declare(self, 'output_topic', '/passthrough/image',
                               'Topic the received images are republished on, unchanged')
        self.health.info.update({'device': 'cpu', 'engine': 'none', 'model': 'none'})
        self.output_pub = self.create_publisher(Image, output_topic, self.output_qos)
        self.start()

    def process_frame(self, msg, image) -> bool:
        self.output_pub.publish(msg)
        return True


def main(args=None) -> int:
    return run_node(PassthroughNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
