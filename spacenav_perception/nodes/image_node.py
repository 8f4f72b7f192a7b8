"""ImageNode: the shared skeleton of the image-processing nodes (centroid, hazard, passthrough).

    class CentroidNode(ImageNode):
        def __init__(self, **kwargs):
            super().__init__('centroid_node', task='centroid', **kwargs)
            ...declare parameters, load the model, create publishers...
            self.start()                       # subscribe last, when everything is ready

        def process_frame(self, msg, image) -> bool:
            ...publish; return True when answered, False when there was nothing to publish

Per frame: the subscription callback counts the frame and hands it to the LatestFrameWorker
(frame_worker.py); the worker thread decodes it with core.image_codec (a numpy view on the
message buffer, no copy) or, with image_transport:=compressed, core.compressed_image (a
CompressedImage on image_topic/compressed becomes an Image with the same header), calls
process_frame and counts the outcome in NodeHealth:
ImageRejected -> rejected[reason] + throttled warning; any other exception -> errors +
throttled warning (the node carries on). A mono16 frame with samples above the declared
`mono16_bits` is processed (clipped) and counted as input_warnings['mono16_over_range'].
Parameters are read once, here and in the subclass constructors, never per frame.

Keyword arguments are passed on to rclpy.node.Node (parameter_overrides, cli_args, context,
...), which is how `spacenav run` starts nodes in one process.
"""
import time

from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image

from spacenav_perception.core.image_codec import ImageRejected, check_mono16_bits, over_range

from .frame_worker import LatestFrameWorker
from .image_msgs import decompress, image_to_array
from .node_health import NodeHealth
from .params import NodeConfigError, choice, declare
from .qos import declare_image_qos, output_qos

DEFAULT_MAX_PIXELS = 8192 * 8192
TRANSPORTS = ('raw', 'compressed')


class ImageNode(Node):
    """Subscribes to `image_topic`, processes the newest frame in a worker thread."""

    def __init__(self, node_name: str, *, task: str, default_image_topic='/camera/image_raw',
                 **kwargs):
        super().__init__(node_name, **kwargs)
        self.image_topic = declare(self, 'image_topic', default_image_topic,
                                   'Input image topic (sensor_msgs/Image; mono8, mono16, rgb8, '
                                   'bgr8, rgba8, bgra8, rgb16, bgr16, rgba16, bgra16, 32FC1, '
                                   'bayer_rggb8/bggr8/gbrg8/grbg8 and their 16-bit forms, or '
                                   'uyvy/yuyv (yuv422/yuv422_yuy2))')
        self.max_pixels = declare(self, 'max_pixels', DEFAULT_MAX_PIXELS,
                                  'Frames with more pixels (width x height) are rejected '
                                  '(too_large) before their data is touched')
        if self.max_pixels < 1:
            raise NodeConfigError(f'parameter max_pixels={self.max_pixels} must be >= 1')
        self.image_transport = choice('image_transport', declare(
            self, 'image_transport', 'raw',
            'raw: sensor_msgs/Image on image_topic; compressed: sensor_msgs/CompressedImage '
            '(PNG or JPEG) on image_topic + /compressed, as image_transport\'s compressed '
            'transport publishes it'), TRANSPORTS)
        self.compressed = self.image_transport == 'compressed'
        self.input_topic = (self.image_topic.rstrip('/') + '/compressed' if self.compressed
                            else self.image_topic)
        self.mono16_bits = declare(self, 'mono16_bits', 16,
                                   'Significant (low) bits of mono16 images: samples are scaled '
                                   'by 1 / (2^bits - 1). 16 = the whole range, as sensor_msgs '
                                   'defines mono16; 10, 12 or 14 for a driver that publishes a '
                                   '10/12/14-bit sensor\'s samples unshifted. Larger samples are '
                                   'clipped and counted (input_warning.mono16_over_range)')
        try:
            check_mono16_bits(self.mono16_bits)
        except ValueError as exc:
            raise NodeConfigError(f'parameter mono16_bits: {exc}') from None
        self.image_qos = declare_image_qos(self)
        self.output_qos = output_qos(self.image_qos.depth)   # for output images
        self.health = NodeHealth(self, topic=self.resolve_topic_name(self.input_topic), task=task)
        self._worker = None
        self._subscription = None

    # ------------------------------------------------------------------ for subclasses
    def load_model(self, task: str, packaged_name: str):
        """Declare model_path / engine / device / strict_device / precision / num_threads and
        load the engine.

        Raises core.manifest.ModelIntegrityError / core.engine.DeviceUnavailableError (start-up
        errors: the node's main() reports them in one line and exits non-zero).
        """
        from spacenav_perception.core.engine import InferenceEngine
        from spacenav_perception.paths import packaged_model_path
        model_path = declare(self, 'model_path', '',
                             f"Model file (.ts, .pt2 or .onnx with its JSON manifest beside it); "
                             f"'' = the packaged models/{packaged_name}.ts")
        device = declare(self, 'device', 'auto',
                         'Inference device: auto (CUDA when available, else CPU), cpu, cuda, '
                         'cuda:N')
        strict_device = declare(self, 'strict_device', False,
                                'true: exit at start-up when the requested device is not '
                                'available; false: warn once and run on the CPU')
        precision = declare(self, 'precision', 'auto',
                            'Inference precision: auto (fp16 on CUDA, fp32 on CPU), fp32, fp16, '
                            'bf16 (half precision only on CUDA)')
        engine_name = declare(self, 'engine', 'auto',
                              'Inference engine: auto (the fastest format present beside '
                              'model_path for the device, core/engine.py ENGINE_PREFERENCE), '
                              'torchscript (.ts), export (.pt2), onnxruntime (.onnx); an '
                              'explicit engine loads that sibling of model_path')
        num_threads = declare(self, 'num_threads', 0,
                              'Intra-op CPU threads for inference: 0 = library default (one per '
                              'core); N sets torch.set_num_threads(N) for this whole process '
                              'and ONNX Runtime intra_op_num_threads. 1 is much faster when the '
                              'cores are shared (several nodes or other work on a small CPU)')
        path = model_path or str(packaged_model_path(packaged_name))
        try:
            engine = InferenceEngine(path, device=str(device), precision=str(precision),
                                     strict_device=bool(strict_device), expected_task=task,
                                     log=self.get_logger().warning, engine=str(engine_name),
                                     num_threads=int(num_threads))
        except ValueError as exc:   # unknown device / precision / engine names, bad threads
            raise NodeConfigError(str(exc)) from exc
        self.health.info.update({'device': engine.device, 'engine': engine.engine,
                                 'engine_request': str(engine_name),
                                 'num_threads': int(num_threads),
                                 'precision': engine.precision, 'model': engine.manifest.name,
                                 'model_path': str(engine.model_path), 'sha256': engine.sha256})
        self.get_logger().info(f'model {engine.model_path} ({engine.manifest.name}, sha256 '
                               f'{engine.sha256[:12]}) on {engine.device} via {engine.engine}, '
                               f'{engine.precision} (engine {engine_name!r}, num_threads '
                               f'{num_threads})')
        return engine

    def process_frame(self, msg: Image, image) -> bool:
        """Publish the results for one decoded frame; True = answered, False = no target."""
        raise NotImplementedError

    def start(self) -> None:
        """Start the worker and subscribe (call at the end of the subclass constructor)."""
        self._worker = LatestFrameWorker(self._process, self.health.count_dropped,
                                         name=f'{self.get_name()}-frames')
        self._subscription = self.create_subscription(
            CompressedImage if self.compressed else Image, self.input_topic, self._on_image,
            self.image_qos)
        self.get_logger().info(f'listening on {self.health.topic} '
                               f'({"CompressedImage, " if self.compressed else ""}'
                               f'{self.image_qos.reliability.name.lower()}, '
                               f'depth {self.image_qos.depth})')

    # ------------------------------------------------------------------ per frame
    def _on_image(self, msg) -> None:
        self.health.count_received()
        self._worker.submit((msg, time.perf_counter()))

    def _process(self, item) -> None:
        msg, received_at = item
        health = self.health
        try:
            if self.compressed:     # decoded here, in the worker, never in the callback
                msg, image = decompress(msg, self.max_pixels)
            else:
                image = image_to_array(msg, self.max_pixels)
            if self.mono16_bits != 16 and over_range(image, msg.encoding, self.mono16_bits):
                health.count_input_warning(
                    'mono16_over_range', f'mono16 samples up to {int(image.max())} exceed '
                    f'2^{self.mono16_bits} - 1 (parameter mono16_bits={self.mono16_bits}); '
                    'clipped: is the camera\'s bit depth what mono16_bits says?')
            answered = self.process_frame(msg, image)
        except ImageRejected as exc:
            health.count_rejected(exc.reason, exc.message)
            return
        except Exception as exc:  # noqa: BLE001 - one bad frame must not end the node
            health.count_error(exc)
            return
        latency = time.perf_counter() - received_at
        if answered:
            health.count_answered(latency)
        else:
            health.count_no_target(latency)

    def frames_idle(self) -> bool:
        """True when no frame is pending or being processed."""
        return self._worker is None or self._worker.idle()

    # ------------------------------------------------------------------ shutdown
    def destroy_node(self):
        if self._worker is not None:
            self._worker.stop()
        return super().destroy_node()
