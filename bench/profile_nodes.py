"""Profile the per-frame path of the nodes in-process (cProfile + perf_counter breakdown).

    .venv/bin/python -m bench.profile_nodes [--frames 50] [--node centroid_node] [--top 25]

Builds each node class in this process (real rclpy, own ROS domain, local DDS) with the
benchmark's model files, then calls the node's per-frame handler (`ImageNode._process`: decode,
predict, publish, count) directly on prebuilt Image messages of the benchmark's rendered frames,
under cProfile. DDS transport and the worker hand-off are not in this profile (see node_bench).
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time

from .common import log, summarize_ms


def _node_class(name: str):
    if name == 'centroid_node':
        from spacenav_perception.nodes.centroid_node import CentroidNode
        return CentroidNode
    if name == 'hazard_node':
        from spacenav_perception.nodes.hazard_node import HazardNode
        return HazardNode
    from spacenav_perception.nodes.passthrough_node import PassthroughNode
    return PassthroughNode


def profile_node(name: str, model_path, frames, encoding: str, n: int, top: int) -> str:
    from rclpy.parameter import Parameter
    from spacenav_perception.nodes.image_msgs import image_from_array
    params = [Parameter('image_topic', value=f'/bench_profile_{os.getpid()}/image'),
              Parameter('device', value='cpu')]
    if model_path:
        from spacenav_perception.core.engine import engine_of
        params.append(Parameter('model_path', value=str(model_path)))
        params.append(Parameter('engine', value=engine_of(model_path)))   # this file
    if name == 'centroid_node':
        params.append(Parameter('min_confidence', value=0.0))
    if name == 'passthrough_node':
        params.append(Parameter('output_topic', value=f'/bench_profile_{os.getpid()}/out'))
    node = _node_class(name)(parameter_overrides=params)
    msgs = [image_from_array(f, encoding) for f in frames]
    try:
        for i in range(3):
            node._process((msgs[i % len(msgs)], time.perf_counter()))
        durations = []
        prof = cProfile.Profile()
        for i in range(n):
            msg = msgs[i % len(msgs)]
            t0 = time.perf_counter()
            prof.enable()
            node._process((msg, t0))
            prof.disable()
            durations.append(time.perf_counter() - t0)
        counters = node.health.counters()
    finally:
        node.destroy_node()
    out = io.StringIO()
    s = summarize_ms(durations)
    out.write(f'== {name} ({model_path or "no model"}), {n} frames '
              f'{frames[0].shape[1]}x{frames[0].shape[0]} {encoding}: p50 {s["p50_ms"]} ms, '
              f'mean {s["mean_ms"]} ms (under cProfile); counters {counters}\n')
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats('cumulative').print_stats(top)
    stats.sort_stats('tottime').print_stats(top)
    return out.getvalue()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='python -m bench.profile_nodes', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--frames', type=int, default=50)
    parser.add_argument('--top', type=int, default=25)
    parser.add_argument('--node', action='append',
                        choices=('centroid_node', 'hazard_node', 'passthrough_node'))
    parser.add_argument('--engine', default='torchscript',
                        choices=('torchscript', 'export', 'onnxruntime'))
    args = parser.parse_args(argv)
    os.environ['ROS_DOMAIN_ID'] = str(150 + os.getpid() % 80)
    from spacenav_perception.ros_env import ensure_local_dds
    ensure_local_dds()
    import rclpy

    from .frames import render_frames
    from .models import resolve_models
    names = args.node or ['centroid_node', 'hazard_node', 'passthrough_node']
    sets = resolve_models(['centroid', 'hazard'])
    rclpy.init()
    try:
        for name in names:
            if name == 'hazard_node':
                frames, enc, _ = render_frames('lunar', 2)
                path = sets['hazard'].files.get(args.engine)
            else:
                frames, enc, _ = render_frames('asteroid', 2)
                path = sets['centroid'].files.get(args.engine) if name == 'centroid_node' \
                    else None
            log(f'[profile] {name}')
            print(profile_node(name, path, frames, enc, args.frames, args.top))
    finally:
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
