"""Shared helpers for tests over real rclpy / real DDS (no mocks).

    from ros_helpers import ros_graph, wait_for, TopicRecorder, make_node

    node = CentroidNode(parameter_overrides=[Parameter('model_path', value=str(path))])
    probe = make_node('probe')
    out = TopicRecorder(probe, PointStamped, '/centroid')
    pub = probe.create_publisher(Image, '/camera/image_raw', reliable_qos())
    with ros_graph(node, probe):
        wait_for(lambda: pub.get_subscription_count() > 0, what='node subscribed')
        publish_until(pub, msg, lambda: out.messages)

rclpy is initialised once per test process (`init_rclpy`, after ensure_local_dds; conftest.py
sets a private ROS_DOMAIN_ID). `ros_graph` spins the given nodes on a MultiThreadedExecutor in
a background thread and destroys them on exit. Timeouts are generous and only bound waiting;
no test asserts on timing.
"""
from __future__ import annotations

import contextlib
import itertools
import threading
import time

import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from spacenav_perception.graph.runner import ExecutorThread
from spacenav_perception.ros_env import ensure_local_dds

DEFAULT_TIMEOUT = 20.0
_names = itertools.count()


def init_rclpy() -> None:
    """rclpy.init() once (DDS on localhost); later calls do nothing."""
    ensure_local_dds()
    if not rclpy.ok():
        rclpy.init()


def make_node(prefix: str = 'test_probe', **kwargs) -> Node:
    """A plain node with a unique name for publishing / subscribing in tests."""
    init_rclpy()
    return Node(f'{prefix}_{next(_names)}', **kwargs)


def reliable_qos(depth: int = 10) -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def wait_for(predicate, timeout: float = DEFAULT_TIMEOUT, interval: float = 0.01,
             what: str = 'condition'):
    """Poll `predicate()` until it is truthy; return its value, or fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out after {timeout:.0f} s waiting for {what}')
        time.sleep(interval)


@contextlib.contextmanager
def ros_graph(*nodes: Node, destroy: bool = True):
    """Spin `nodes` in a background thread; yield the executor. Destroys the nodes on exit.

    The package's own ExecutorThread spins and stops it (callbacks handed out finish before the
    executor is shut down; rclpy's Executor.shutdown() alone does not wait for them)."""
    init_rclpy()
    executor = MultiThreadedExecutor(num_threads=4)
    for node in nodes:
        executor.add_node(node)
    spinner = ExecutorThread(executor, name='test-executor').start()
    try:
        yield executor
    finally:
        spinner.stop(timeout_s=10.0)
        if destroy:
            for node in nodes:
                node.destroy_node()


class TopicRecorder:
    """Records every message of `topic` received by `node` (thread-safe)."""

    def __init__(self, node: Node, msg_type, topic: str, qos=None):
        self.topic = topic
        self._lock = threading.Lock()
        self._messages = []
        self.subscription = node.create_subscription(msg_type, topic, self._callback,
                                                     qos or reliable_qos(100))

    def _callback(self, msg) -> None:
        with self._lock:
            self._messages.append(msg)

    @property
    def messages(self) -> list:
        with self._lock:
            return list(self._messages)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()

    def wait(self, count: int = 1, timeout: float = DEFAULT_TIMEOUT, where=None) -> list:
        """Wait until `count` messages (matching `where(msg)` if given) arrived; return them."""
        def ready():
            found = [m for m in self.messages if where is None or where(m)]
            return found if len(found) >= count else None
        return wait_for(ready, timeout, what=f'{count} message(s) on {self.topic}')


def wait_matched(publisher, count: int = 1, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Wait until `publisher` is matched with `count` subscription(s)."""
    wait_for(lambda: publisher.get_subscription_count() >= count, timeout,
             what=f'{count} subscriber(s) on {publisher.topic_name}')


def publish_until(publisher, msg, predicate, timeout: float = DEFAULT_TIMEOUT,
                  period: float = 0.25):
    """Publish `msg` every `period` s until `predicate()` is truthy (covers DDS discovery for
    best-effort subscribers); return the predicate's value."""
    deadline = time.monotonic() + timeout
    while True:
        publisher.publish(msg)
        end = min(deadline, time.monotonic() + period)
        while time.monotonic() < end:
            value = predicate()
            if value:
                return value
            time.sleep(0.005)
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out after {timeout:.0f} s publishing on '
                                 f'{publisher.topic_name}')
