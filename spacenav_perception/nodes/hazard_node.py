"""hazard_node: terrain segmentation, hazard mask and safe landing site from camera images.

Subscribes:  image_topic (sensor_msgs/Image; or image_topic/compressed, CompressedImage, with
             image_transport:=compressed)
Publishes (all with the image's header, at the image's resolution):
             /hazard_mask         mono8: 255 = hazard (a class in hazard_classes), 0 = not
             /segmentation        mono8 class ids: 0 ground, 1 small rock, 2 large rock, 3 sky
             /segmentation/color  rgb8 palette (publish_color): ground (0,0,0), small rock
                                  (0,255,0), large rock (0,0,255), sky (255,0,0)
             /safe_site           geometry_msgs/PointStamped x, y = centre of the largest
                                  hazard-free ground disc (input pixels), z = its radius (px);
                                  only when one exists (publish_safe_site)
             /diagnostics         counters, latency, device, model (node_health)
Hazard regions smaller than min_hazard_region_px input pixels are ground in every output.
flip_average (default true) also runs the model on the mirrored frame and sums the logits
(more accurate, twice the model's time); upsampling 'bilinear' (default) takes the argmax of
the logits upsampled to the input resolution, 'nearest' upsamples the model-resolution argmax
(core/class_map.py). logit_offset (not set: the model manifest's) is added per class to the
logits before the argmax (core/segmentation_predictor.py).
/hazard_mask is published for every frame. /segmentation, /segmentation/color and /safe_site are
published only while they have subscribers (get_subscription_count() > 0), and the
full-resolution class map and the safe site are only computed when a subscriber wants them.
"""
import numpy as np
from geometry_msgs.msg import PointStamped
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

from spacenav_perception.core.class_map import (DEFAULT_FLIP_AVERAGE, DEFAULT_UPSAMPLING,
                                                UPSAMPLING_MODES)
from spacenav_perception.core.hazard_specks import DEFAULT_MIN_HAZARD_REGION_PX
from spacenav_perception.core.lunar_classes import HAZARD_CLASSES
from spacenav_perception.core.lunar_classes import PALETTE as CLASS_PALETTE
from spacenav_perception.core.segmentation_predictor import SegmentationPredictor
from spacenav_perception.graph.runner import run_node

from .image_msgs import make_image
from .image_node import ImageNode
from .params import NodeConfigError, declare

# Class id -> RGB (the lunar dataset's mask colours); ids without a colour are drawn white.
PALETTE = np.full((256, 3), 255, dtype=np.uint8)
PALETTE[:len(CLASS_PALETTE)] = CLASS_PALETTE


class HazardNode(ImageNode):
    DEFAULT_NAME = 'hazard_node'

    def __init__(self, **kwargs):
        super().__init__(self.DEFAULT_NAME, task='segmentation', **kwargs)
        hazard_classes = declare(self, 'hazard_classes', list(HAZARD_CLASSES),
                                 'Class ids that are hazards in /hazard_mask and for the safe '
                                 'site (0 ground, 1 small rock, 2 large rock, 3 sky)')
        self.publish_color = declare(self, 'publish_color', False,
                                     'Publish /segmentation/color (rgb8 class palette)')
        self.publish_safe_site = declare(self, 'publish_safe_site', True,
                                         'Publish /safe_site (largest hazard-free ground disc)')
        min_region = declare(self, 'min_hazard_region_px', DEFAULT_MIN_HAZARD_REGION_PX,
                             'Hazard regions (8-connected) smaller than this many input pixels '
                             'are ground in every output: specks below the rock size the '
                             'training masks label (30 px at 720x480); 0 keeps every pixel')
        flip_average = declare(self, 'flip_average', DEFAULT_FLIP_AVERAGE,
                               'Also run the model on the frame mirrored left-right and sum the '
                               'logits: more accurate, twice the model time; false halves it')
        upsampling = declare(self, 'upsampling', DEFAULT_UPSAMPLING,
                             'Class map at the input resolution from the model\'s: bilinear '
                             '(argmax of the upsampled logits) or nearest (cheaper for inputs '
                             'much larger than the model\'s)')
        logit_offset = declare(self, 'logit_offset', Parameter.Type.DOUBLE_ARRAY,
                               'One number per class added to the model\'s logits before the '
                               'argmax (decimals, e.g. [0.0, -0.5, -1.0, 0.0]); not set: the '
                               'offsets in the model manifest (chosen on validation data), '
                               'zeros: the network\'s own argmax; lower rock offsets mean '
                               'fewer hazard pixels')
        classes = tuple(int(c) for c in hazard_classes)
        if not classes or any(not 0 <= c < 256 for c in classes):
            raise NodeConfigError(f'parameter hazard_classes={list(classes)} must be class ids '
                                  'in 0..255 (at least one)')
        if min_region < 0:            # an integer: rclpy refuses other types at declaration
            raise NodeConfigError(f'parameter min_hazard_region_px={min_region!r} must be an '
                                  'integer >= 0 (input pixels)')
        if upsampling not in UPSAMPLING_MODES:
            raise NodeConfigError(f'parameter upsampling={upsampling!r} must be one of '
                                  f'{", ".join(UPSAMPLING_MODES)}')
        engine = self.load_model('segmentation', 'hazard')
        try:
            self.predictor = SegmentationPredictor(engine, hazard_classes=classes,
                                                   compute_safe_site=bool(self.publish_safe_site),
                                                   min_hazard_region_px=min_region,
                                                   upsampling=upsampling,
                                                   flip_average=flip_average,
                                                   logit_offset=logit_offset,
                                                   mono16_bits=self.mono16_bits)
        except ValueError as exc:       # only logit_offset is not checked above
            raise NodeConfigError(f'parameter logit_offset: {exc}') from None
        self.predictor.warmup()
        self.hazard_pub = self.create_publisher(Image, '/hazard_mask', self.output_qos)
        self.segmentation_pub = self.create_publisher(Image, '/segmentation', self.output_qos)
        self.color_pub = (self.create_publisher(Image, '/segmentation/color', self.output_qos)
                          if self.publish_color else None)
        self.safe_site_pub = (self.create_publisher(PointStamped, '/safe_site', 10)
                              if self.publish_safe_site else None)
        self.start()

    def process_frame(self, msg, image) -> bool:
        want_classes = self.segmentation_pub.get_subscription_count() > 0
        want_color = self.color_pub is not None and self.color_pub.get_subscription_count() > 0
        want_site = (self.safe_site_pub is not None and
                     self.safe_site_pub.get_subscription_count() > 0)
        result = self.predictor.predict(image, msg.encoding,
                                        classes=want_classes or want_color, safe_site=want_site)
        header = msg.header
        self.hazard_pub.publish(make_image(header, result.hazard, 'mono8'))
        if want_classes:
            self.segmentation_pub.publish(make_image(header, result.classes, 'mono8'))
        if want_color:
            self.color_pub.publish(make_image(header, PALETTE[result.classes], 'rgb8'))
        if want_site and result.safe_site is not None:
            x, y, radius = result.safe_site
            out = PointStamped()
            out.header = header
            out.point.x, out.point.y, out.point.z = float(x), float(y), float(radius)
            self.safe_site_pub.publish(out)
        return True


def main(args=None) -> int:
    return run_node(HazardNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
