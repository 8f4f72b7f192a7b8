"""Run rclpy nodes in this process: the node console scripts and `spacenav run`.

- `run_node(NodeClass, args)`: what every node's `main()` returns (its exit code).
- `run_graph(config, overrides, exit_when_done)`: the enabled nodes of a graph YAML
  (graph_config.resolve) on one MultiThreadedExecutor (`spacenav run`).

Both: ensure_local_dds() before rclpy.init; SIGINT and SIGTERM end the process cleanly with
exit code 0 (the executor spins in a thread, the main thread waits for the signal, then every
node is destroyed and rclpy shut down). A start-up error (broken model, missing device with
strict_device, bad parameter value) is reported as ONE error line and exit code 2, without a
traceback.

Node class contract (for every class in graph_config.NODE_CLASSES): `Class(**kwargs)` passes
kwargs on to rclpy.node.Node.__init__; the runner uses `parameter_overrides` (typed values
from the YAML) and `cli_args=['--ros-args', '-r', '__node:=NAME']` (the YAML node name).
A node that finishes on its own (e.g. the replay node at the end of its bag) exposes
`done` (a threading.Event) and sets it; with `exit_when_done` the runner then stops.
"""
from __future__ import annotations

import importlib
import signal
import sys
import threading
import time
from typing import Iterable, List, Optional

from spacenav_perception.ros_env import ensure_local_dds

EXIT_STARTUP_ERROR = 2
EXIT_RUNTIME_ERROR = 1


def startup_error_message(exc: BaseException) -> Optional[str]:
    """The message for a start-up error that ends a node without a traceback, else None."""
    from spacenav_perception.core.engine import DeviceUnavailableError
    from spacenav_perception.core.manifest import ModelIntegrityError
    from spacenav_perception.graph.graph_config import GraphConfigError
    from spacenav_perception.nodes.params import NodeConfigError
    known = (ModelIntegrityError, DeviceUnavailableError, NodeConfigError, GraphConfigError)
    if isinstance(exc, known):
        return str(exc)
    try:
        from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
        from rclpy.exceptions import ParameterException
    except ImportError:  # pragma: no cover
        return None
    if isinstance(exc, (InvalidParameterTypeException, InvalidParameterValueException,
                        ParameterException)):
        return str(exc)
    return None


def load_node_class(spec: str):
    """'module:Class' -> the class."""
    module_name, _, class_name = spec.partition(':')
    return getattr(importlib.import_module(module_name), class_name)


def _log_error(name: str, message: str) -> None:
    import rclpy.logging
    rclpy.logging.get_logger(name).error(message)


class ExecutorThread:
    """An rclpy executor spinning in a background thread, stopped without losing callbacks.

    ``stop()`` ends the spinning, lets the callbacks the executor already handed to its
    thread pool finish while the nodes and the executor's guard condition still exist, and only
    then shuts the executor down. (rclpy 7.1, Jazzy: ``Executor.shutdown()`` skips its own wait
    for running callbacks and destroys the guard condition under them, so each queued callback
    ends in "The following exception was never retrieved: cannot use Destroyable because
    destruction was requested" on stderr; ros2/rclpy#1666.) The nodes are the caller's to
    destroy afterwards. ``failure`` holds the first exception the executor or a callback raised
    (also one of the callbacks that finish during ``stop()``), else None; ``stopped`` is set
    once the spinning has ended, also when rclpy was shut down from outside.
    """

    def __init__(self, executor, name: str = 'executor'):
        self.executor = executor
        self.failure: Optional[BaseException] = None
        self.stopped = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._spin, name=name, daemon=True)

    def start(self) -> 'ExecutorThread':
        self._thread.start()
        return self

    def _spin(self) -> None:
        try:
            while not self._stopping.is_set() and self.executor.context.ok():
                self.executor.spin_once(timeout_sec=0.1)
        except Exception as exc:  # noqa: BLE001 - reported through `failure`
            if not self._stopping.is_set():
                self.failure = exc
        finally:
            self.stopped.set()

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop spinning and shut the executor down; False when callbacks still ran after
        timeout_s (they are then left to fail on their own)."""
        deadline = time.monotonic() + timeout_s
        self._stopping.set()
        self._thread.join(timeout_s)
        # MultiThreadedExecutor keeps the callbacks it handed to its pool (tasks) in _futures;
        # a SingleThreadedExecutor has none (its callbacks ran inside spin_once)
        finished = True
        for task in list(getattr(self.executor, '_futures', ())):
            while not task.done() and time.monotonic() < deadline:
                time.sleep(0.005)
            if not task.done():
                finished = False
            elif task.exception() is not None and self.failure is None:
                self.failure = task.exception()     # a callback that raised: not lost
        self.executor.shutdown(timeout_sec=max(0.0, deadline - time.monotonic()))
        return finished


def spin_until_stopped(nodes: List, *, exit_when_done: bool = False,
                       multi_threaded: bool = True) -> int:
    """Spin `nodes` until SIGINT/SIGTERM (or a node's `done` with exit_when_done); then destroy
    the nodes and shut rclpy down. Returns the exit code (0 clean, 1 executor failure)."""
    import rclpy
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor

    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    executor = MultiThreadedExecutor() if multi_threaded else SingleThreadedExecutor()
    for node in nodes:
        executor.add_node(node)
    done_events = [n.done for n in nodes if isinstance(getattr(n, 'done', None), threading.Event)]
    if exit_when_done and not done_events:
        nodes[0].get_logger().warning('--exit-when-done: no node in this graph signals done; '
                                      'running until SIGINT / SIGTERM')
    spinner = ExecutorThread(executor).start()
    try:
        while not stop.wait(0.1) and not spinner.stopped.is_set():
            if exit_when_done and any(event.is_set() for event in done_events):
                break
    finally:
        spinner.stop(timeout_s=10.0)
        for node in nodes:
            try:
                node.destroy_node()
            except Exception:  # noqa: BLE001 - shutting down anyway
                pass
        rclpy.try_shutdown()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if spinner.failure is not None:
        failure = spinner.failure
        print(f'error: executor failed: {type(failure).__name__}: {failure}', file=sys.stderr)
        return EXIT_RUNTIME_ERROR
    return 0


def _init_rclpy(argv) -> None:
    ensure_local_dds()
    import rclpy
    from rclpy.signals import SignalHandlerOptions
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)


def _construct(factory, log_name: str):
    """Build the nodes (rclpy initialised); a start-up error -> (None, exit code) after one
    clear log line, Ctrl-C during start-up -> (None, 0)."""
    import rclpy
    try:
        return factory(), None
    except BaseException as exc:
        message = startup_error_message(exc)
        rclpy.try_shutdown()
        if message is None:
            if isinstance(exc, KeyboardInterrupt):
                return None, 0
            raise
        _log_error(log_name, message)
        return None, EXIT_STARTUP_ERROR


def run_node(node_class, args: Optional[List[str]] = None, *,
             exit_when_done: bool = False) -> int:
    """main() of a node console script: `node_name [--ros-args -p name:=value ...]`.

    exit_when_done: return once the node sets its `done` event (the replay node).
    """
    _init_rclpy(sys.argv if args is None else args)
    node, code = _construct(node_class,
                            getattr(node_class, 'DEFAULT_NAME', node_class.__name__))
    if node is None:
        return code
    return spin_until_stopped([node], exit_when_done=exit_when_done, multi_threaded=False)


def create_graph_nodes(entries: Iterable) -> List:
    """(NodeSpec, parameters) pairs -> constructed nodes (rclpy must be initialised)."""
    from rclpy.parameter import Parameter
    nodes = []
    try:
        for spec, params in entries:
            node_class = load_node_class(spec.node_class)
            overrides = [Parameter(name, value=value) for name, value in params.items()]
            nodes.append(node_class(parameter_overrides=overrides,
                                    cli_args=['--ros-args', '-r', f'__node:={spec.name}']))
    except BaseException:
        for node in nodes:
            node.destroy_node()
        raise
    return nodes


def run_graph(config, overrides=None, *, exit_when_done: bool = False) -> int:
    """`spacenav run`: start the graph's enabled nodes in this process; returns the exit code."""
    from spacenav_perception.graph.graph_config import GraphConfigError, resolve
    try:
        entries = resolve(config, overrides)
    except GraphConfigError as exc:
        print(f'spacenav run: error: {exc}', file=sys.stderr)
        return EXIT_STARTUP_ERROR
    if not entries:
        print('spacenav run: error: no node is enabled', file=sys.stderr)
        return EXIT_STARTUP_ERROR
    _init_rclpy([])
    nodes, code = _construct(lambda: create_graph_nodes(entries), 'spacenav_run')
    if nodes is None:
        return code
    names = ', '.join(node.get_name() for node in nodes)
    nodes[0].get_logger().info(f'spacenav run: started {names}')
    return spin_until_stopped(nodes, exit_when_done=exit_when_done, multi_threaded=True)
