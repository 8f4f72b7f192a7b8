"""centroid_node: asteroid centroid (and line of sight) from camera images.

Subscribes:  image_topic (sensor_msgs/Image; or image_topic/compressed, CompressedImage, with
             image_transport:=compressed), camera_info_topic (sensor_msgs/CameraInfo)
Publishes:   /centroid          geometry_msgs/PointStamped  x, y = centroid in full-resolution
                                input pixels (x right, y down, (0, 0) = centre of the top-left
                                pixel); z = confidence in [0, 1] (1 for models without an
                                in-view score); header = the image's (stamp, frame_id)
             /centroid/bearing  geometry_msgs/Vector3Stamped unit line of sight in the camera
                                optical frame (z forward), once a CameraInfo has arrived
             /centroid/debug    sensor_msgs/Image rgb8 with the estimate drawn (publish_debug;
                                drawn only while the topic has a subscriber)
             /diagnostics       counters, latency, device, model (node_health)
A frame whose target is not in view (confidence < min_confidence) publishes nothing and counts
as no_target. With zoom_refine (default -1.0: the model manifest's), the position comes from a
second pass of the model on a crop around the first answer (core/zoom_refine.py).
"""
import cv2
import numpy as np
from geometry_msgs.msg import PointStamped, Vector3Stamped
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from spacenav_perception.core import bearing as core_bearing
from spacenav_perception.core.centroid_predictor import CentroidPredictor
from spacenav_perception.core.image_codec import to_rgb_u8
from spacenav_perception.graph.runner import run_node

from .image_msgs import make_image
from .image_node import ImageNode
from .params import NodeConfigError, declare

DEBUG_COLOUR = (0, 255, 0)


class CentroidNode(ImageNode):
    DEFAULT_NAME = 'centroid_node'

    def __init__(self, **kwargs):
        super().__init__(self.DEFAULT_NAME, task='centroid', **kwargs)
        camera_info_topic = declare(self, 'camera_info_topic', '/camera/camera_info',
                                    'CameraInfo topic; /centroid/bearing is published once one '
                                    'has arrived')
        self.publish_debug = declare(self, 'publish_debug', False,
                                     'Publish /centroid/debug: the image (rgb8) with the '
                                     'estimate drawn')
        min_confidence = declare(self, 'min_confidence', 0.5,
                                 'Frames whose in-view confidence is below this publish nothing '
                                 '(counted as no_target)')
        zoom_refine = declare(self, 'zoom_refine', -1.0,
                              'Second pass of the model on a crop around its first answer, this '
                              'many times the lit body\'s extent wide (a decimal, e.g. 2.25; '
                              '0.0: one pass, half the model time); negative (the default, '
                              '-1.0): the model manifest\'s zoom_refine (chosen on validation '
                              'data)')
        if not 0.0 <= float(min_confidence) <= 1.0:
            raise NodeConfigError(f'parameter min_confidence={min_confidence} must be in [0, 1]')
        engine = self.load_model('centroid', 'centroid')
        try:
            self.predictor = CentroidPredictor(engine, min_confidence=float(min_confidence),
                                               mono16_bits=self.mono16_bits,
                                               zoom_refine=(None if zoom_refine < 0
                                                            else zoom_refine))
        except ValueError as exc:       # only zoom_refine is not checked above
            raise NodeConfigError(f'parameter {exc}') from None
        self.health.info['zoom_refine'] = f'{self.predictor.zoom_refine:g}'   # 0: one pass
        self.predictor.warmup()
        self.centroid_pub = self.create_publisher(PointStamped, '/centroid', 10)
        self.bearing_pub = self.create_publisher(Vector3Stamped, '/centroid/bearing', 10)
        self.debug_pub = (self.create_publisher(Image, '/centroid/debug', self.output_qos)
                          if self.publish_debug else None)
        self._camera = None   # (K 3x3, D, distortion model) from the latest valid CameraInfo
        self.create_subscription(CameraInfo, camera_info_topic, self._on_camera_info,
                                 QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
        self.start()

    # ------------------------------------------------------------------ camera model
    @property
    def has_camera_info(self) -> bool:
        """True once a valid CameraInfo arrived (bearings are published from then on)."""
        return self._camera is not None

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            K = core_bearing.camera_matrix(msg.k)
        except ValueError as exc:
            self.health._warn('camera_info', f'CameraInfo ignored: {exc}')
            return
        D = np.asarray(msg.d, dtype=np.float64)
        self._camera = (K, D if D.size and np.any(D != 0) else None,
                        msg.distortion_model or 'plumb_bob')

    # ------------------------------------------------------------------ per frame
    def process_frame(self, msg, image) -> bool:
        encoding = msg.encoding
        result = self.predictor.predict(image, encoding)
        if not result.in_view:
            return False
        out = PointStamped()
        out.header = msg.header
        point = out.point
        point.x = result.x
        point.y = result.y
        point.z = result.confidence
        self.centroid_pub.publish(out)
        camera = self._camera
        if camera is not None:
            los = core_bearing.bearing_from_pixel(result.x, result.y, camera[0], camera[1],
                                                  camera[2])
            vec = Vector3Stamped()
            vec.header = msg.header
            vec.vector.x, vec.vector.y, vec.vector.z = (float(v) for v in los)
            self.bearing_pub.publish(vec)
        if self.debug_pub is not None and self.debug_pub.get_subscription_count() > 0:
            drawn = draw_estimate(image, encoding, result, self.mono16_bits)
            self.debug_pub.publish(make_image(msg.header, drawn, 'rgb8'))
        return True


def draw_estimate(image: np.ndarray, encoding: str, result, mono16_bits: int = 16) -> np.ndarray:
    """rgb8 copy of `image` with a cross and a circle at the estimate (sub-pixel)."""
    rgb = to_rgb_u8(image, encoding, mono16_bits)
    if rgb is image or np.may_share_memory(rgb, image) or not rgb.flags.writeable:
        rgb = rgb.copy()
    height, width = rgb.shape[:2]
    size = max(5, min(height, width) // 16)
    shift = 4
    centre = (int(round((result.x) * (1 << shift))), int(round((result.y) * (1 << shift))))
    cv2.circle(rgb, centre, size << shift, DEBUG_COLOUR, 1, cv2.LINE_AA, shift)
    cx, cy = int(round(result.x)), int(round(result.y))
    cv2.drawMarker(rgb, (cx, cy), DEBUG_COLOUR, cv2.MARKER_CROSS, size, 1)
    return rgb


def main(args=None) -> int:
    return run_node(CentroidNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
