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
    failure = []

    def spin():
        try:
            executor.spin()
        except Exception as exc:  # noqa: BLE001 - reported below
            if not stop.is_set():
                failure.append(exc)
        finally:
            stop.set()

    done_events = [n.done for n in nodes if isinstance(getattr(n, 'done', None), threading.Event)]
    if exit_when_done and not done_events:
        nodes[0].get_logger().warning('--exit-when-done: no node in this graph signals done; '
                                      'running until SIGINT / SIGTERM')
    thread = threading.Thread(target=spin, name='executor', daemon=True)
    thread.start()
    try:
        while not stop.wait(0.1):
            if exit_when_done and any(event.is_set() for event in done_events):
                break
    finally:
        stop.set()
        executor.shutdown(timeout_sec=10.0)
        thread.join(10.0)
        for node in nodes:
            try:
                node.destroy_node()
            except Exception:  # noqa: BLE001 - shutting down anyway
                pass
        rclpy.try_shutdown()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if failure:
        print(f'error: executor failed: {type(failure[0]).__name__}: {failure[0]}',
              file=sys.stderr)
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
