"""`spacenav bench`: model, node and overload benchmarks -> table (+ one JSON object).

Use through the CLI (``spacenav bench --help``) or ``python -m bench.runner`` from the source
root. Human output (progress, table) goes to stderr when ``--json`` puts the JSON on stdout.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .common import finite, log, machine_info

MODEL_NAMES = ('centroid', 'hazard', 'thesis')


@dataclass
class Plan:
    warmup: int
    runs: int
    frames: int
    rate_hz: float
    duration_s: float
    overload_rate_hz: float
    overload_duration_s: float
    drain_s: float


FULL = Plan(warmup=20, runs=200, frames=4, rate_hz=30.0, duration_s=30.0,
            overload_rate_hz=200.0, overload_duration_s=20.0, drain_s=1.0)
QUICK = Plan(warmup=3, runs=15, frames=1, rate_hz=30.0, duration_s=3.0,
             overload_rate_hz=200.0, overload_duration_s=2.0, drain_s=0.5)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--quick', action='store_true',
                        help='reduced run (few timed calls, 3 s node runs, 2 s overload): under '
                             'a minute; numbers are indicative only')
    parser.add_argument('--json', action='store_true',
                        help='print ONE JSON object on stdout (the table goes to stderr)')
    parser.add_argument('--out', type=Path, default=None, help='also write the JSON to FILE')
    parser.add_argument('--device', default='auto', choices=('auto', 'cpu', 'cuda', 'all'),
                        help='auto: CUDA when available else CPU; all: CPU and CUDA (when '
                             'available); cuda without a GPU is an error (default auto)')
    parser.add_argument('--skip-nodes', action='store_true',
                        help='models only (no node processes, no DDS)')
    parser.add_argument('--models', default=','.join(MODEL_NAMES),
                        help='comma list of centroid, hazard, thesis (default all)')
    parser.add_argument('--models-dir', type=Path, default=None,
                        help='take NAME.ts/.pt2/.onnx (+ NAME.json) from DIR instead of the '
                             'shipped models/ (missing ones: untrained exports)')
    parser.add_argument('--node-engine', default='auto',
                        choices=('auto', 'torchscript', 'export', 'onnxruntime'),
                        help='model file given to the nodes: auto = fastest predictor measured '
                             'here for that model and device (default auto)')
    parser.add_argument('--runs', type=int, default=None, help='timed predictor calls per row')
    parser.add_argument('--warmup', type=int, default=None, help='untimed calls first')
    parser.add_argument('--duration', type=float, default=None,
                        help='seconds of the 30 Hz node latency runs')
    parser.add_argument('--overload-duration', type=float, default=None,
                        help='seconds of the 200 Hz overload runs')
    parser.add_argument('--qos-reliability', default='reliable',
                        choices=('best_effort', 'reliable'),
                        help='qos_reliability parameter given to the nodes (default reliable: '
                             'best-effort 1 MB frames are partly lost by the DDS transport '
                             'between processes, which is then counted as lost)')
    parser.add_argument('--qos-depth', type=int, default=1,
                        help='qos_depth parameter given to the nodes (default 1)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch intra-op threads in the bench process and OMP_NUM_THREADS '
                             'of the node processes (default: torch\'s own choice). On a busy '
                             'or small machine 1 can be several times faster than the default')
    parser.add_argument('--domain-id', type=int, default=None,
                        help='ROS_DOMAIN_ID of the run (default: one derived from the pid, '
                             'so the benchmark does not meet other ROS traffic)')
    parser.add_argument('--refresh-models', action='store_true',
                        help='re-export the cached untrained models')


def _devices(choice: str) -> list:
    import torch
    has_cuda = torch.cuda.is_available()
    if choice == 'cuda' and not has_cuda:
        raise SystemExit('spacenav bench: --device cuda but torch sees no CUDA device '
                         f'(torch {torch.__version__}); use --device cpu or auto')
    if choice == 'auto':
        return ['cuda' if has_cuda else 'cpu']
    if choice == 'all':
        return ['cpu'] + (['cuda'] if has_cuda else [])
    return [choice]


def _fmt(v, nd=2) -> str:
    if isinstance(v, bool):
        return 'yes' if v else 'NO'
    if isinstance(v, float):
        return 'nan' if not math.isfinite(v) else f'{v:.{nd}f}'
    return str(v)


def _table(rows, columns) -> str:
    cells = [[c for c in columns]] + [[_fmt(r.get(c, '')) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ['  '.join(cell.ljust(w) for cell, w in zip(row, widths)) for row in cells]
    lines.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(lines)


def render_report(result: dict) -> str:
    m = result['machine']
    out = [f"spacenav bench ({result['mode']}) {m['date']} commit {m.get('commit')} - "
           f"{m['nproc']} x {m['cpu']}" + (f", GPU {m['gpu']}" if m.get('gpu') else '')]
    if result['models']:
        out += ['', 'Models (predictor = preprocess + model + postprocess, batch 1; '
                'model = model alone)',
                _table([r for r in result['models'] if r.get('scope') != 'predictor option'],
                       ('model', 'engine', 'device', 'precision', 'scope', 'source', 'p50_ms',
                        'p99_ms', 'fps'))]
        options = [r for r in result['models'] if r.get('scope') == 'predictor option']
        if options:
            out += ['', 'Hazard predictor options (timed interleaved; ratio = p50 / p50 of '
                    'the cheapest)',
                    _table(options, ('model', 'engine', 'device', 'option', 'p50_ms',
                                     'p99_ms', 'ratio'))]
        for r in result.get('ratios', []):
            out.append(f"  centroid/thesis p50 ({r['engine']}, {r['device']}): "
                       f"{r['centroid_p50_ms']:.2f} / {r['thesis_p50_ms']:.2f} ms = "
                       f"{r['ratio']:.2f}")
        for model, per in result.get('fastest_engine', {}).items():
            for dev, eng in per.items():
                out.append(f'  fastest predictor engine for {model} on {dev}: {eng}')
    if result['nodes']:
        out += ['', 'Nodes (end to end over DDS, separate processes)',
                _table(result['nodes'], ('node', 'engine', 'device', 'p50_ms', 'p95_ms',
                                         'max_ms', 'lost', 'published', 'passthrough_p50_ms',
                                         'predictor_p50_ms'))]
        for r in result['nodes']:
            if 'overhead_ok' in r:
                out.append(f"  overhead check {r['node']}: p50 {r['p50_ms']:.2f} ms <= "
                           f"passthrough {r['passthrough_p50_ms']:.2f} + predictor "
                           f"{r['predictor_p50_ms']:.2f} + 2 ms = {r['overhead_budget_ms']:.2f}"
                           f" ms: {'OK' if r['overhead_ok'] else 'EXCEEDED'}"
                           + ('' if r.get('overhead_check_valid', True) else
                              f" (not meaningful: the node does not keep up with "
                              f"{r['rate_hz']:g} Hz, {r['lost']} lost; frames waited)"))
    if result['overload']:
        out += ['', 'Overload (200 Hz into the node)',
                _table(result['overload'], ('node', 'published', 'answered', 'dropped',
                                            'p95_ms', 'max_ms', 'rss_before_mb',
                                            'rss_after_mb', 'rss_peak_mb'))]
    if result['errors']:
        out += ['', 'Problems:'] + [f'  - {e}' for e in result['errors']]
    return '\n'.join(out)


def _ratios(rows) -> list:
    by = {(r['model'], r['engine'], r['device']): r for r in rows if r.get('scope') == 'predictor'}
    out = []
    for (model, engine, device), r in by.items():
        t = by.get(('thesis', engine, device))
        if model == 'centroid' and t:
            out.append({'engine': engine, 'device': device, 'centroid_p50_ms': r['p50_ms'],
                        'thesis_p50_ms': t['p50_ms'],
                        'ratio': round(r['p50_ms'] / t['p50_ms'], 3)})
    return out


def run(args) -> int:
    from spacenav_perception.ros_env import ensure_local_dds

    plan = QUICK if args.quick else FULL
    warmup = args.warmup if args.warmup is not None else plan.warmup
    runs = args.runs if args.runs is not None else plan.runs
    names = [n.strip() for n in args.models.split(',') if n.strip()]
    bad = [n for n in names if n not in MODEL_NAMES]
    if bad or not names:
        raise SystemExit(f'spacenav bench: unknown model(s) {bad}; use {", ".join(MODEL_NAMES)}')
    devices = _devices(args.device)
    t_start = time.monotonic()
    threads = getattr(args, 'threads', None)
    if threads is not None:
        if threads < 1:
            raise SystemExit('spacenav bench: --threads must be >= 1')
        import torch
        torch.set_num_threads(threads)
        os.environ['OMP_NUM_THREADS'] = str(threads)   # inherited by the node processes

    from tqdm import tqdm

    from .model_bench import fastest_engines, load_frames, run_model_bench
    from .models import ENGINES, MODELS, resolve_models

    model_sets = resolve_models(names, models_dir=args.models_dir, refresh=args.refresh_models)
    errors = [p for ms in model_sets.values() for p in ms.problems]
    node_models = [m for m in ('centroid', 'hazard') if m in model_sets]
    steps = sum(len(ms.files) for ms in model_sets.values()) * len(devices)
    if not args.skip_nodes:
        steps += 3 * len(node_models)
    bar = tqdm(total=steps, desc='bench', file=sys.stderr, unit='step', leave=False,
               disable=None)

    def progress(label):
        bar.set_postfix_str(label)
        bar.update(1)

    frames, frames_info = load_frames({ms.frames for ms in model_sets.values()}, plan.frames)
    rows, errs = run_model_bench(model_sets, devices, warmup, runs, frames, progress)
    errors += errs
    fastest = fastest_engines(rows)

    nodes_rows, overload_rows = [], []
    domain = None
    if not args.skip_nodes:
        domain = args.domain_id if args.domain_id is not None else 150 + os.getpid() % 80
        os.environ['ROS_DOMAIN_ID'] = str(domain)
        ensure_local_dds()
        import rclpy

        from .node_bench import NodeBenchConfig, run_node_bench
        node_device = devices[-1]
        model_files, predictor_p50 = {}, {}
        for model in node_models:
            ms = model_sets[model]
            engine = args.node_engine
            if engine == 'auto':
                engine = fastest.get(model, {}).get(node_device, 'torchscript')
            if engine not in ms.files:
                errors.append(f'nodes: {model} has no {ENGINES[engine]} file')
                continue
            model_files[model] = (str(ms.files[engine]), engine)
            match = [r for r in rows if r['model'] == model and r['engine'] == engine and
                     r['device'] == node_device and r.get('scope') == 'predictor']
            predictor_p50[model] = match[0]['p50_ms'] if match else None
        cfg = NodeBenchConfig(
            rate_hz=plan.rate_hz,
            duration_s=args.duration if args.duration is not None else plan.duration_s,
            overload_rate_hz=plan.overload_rate_hz,
            overload_duration_s=(args.overload_duration if args.overload_duration is not None
                                 else plan.overload_duration_s),
            drain_s=plan.drain_s, qos_reliability=args.qos_reliability,
            qos_depth=args.qos_depth, device=node_device)
        rclpy.init()
        try:
            nodes_rows, overload_rows, errs = run_node_bench(cfg, model_files, predictor_p50,
                                                             frames, progress)
            errors += errs
        finally:
            rclpy.try_shutdown()
    bar.close()

    machine = machine_info()
    result = {
        'mode': 'quick' if args.quick else 'full',
        'machine': machine,
        'date': machine['date'], 'commit': machine.get('commit'),
        'settings': {'devices': devices, 'warmup': warmup, 'runs': runs, 'batch': 1,
                     'node_rate_hz': plan.rate_hz,
                     'node_duration_s': None if args.skip_nodes else cfg.duration_s,
                     'overload_rate_hz': plan.overload_rate_hz,
                     'overload_duration_s': None if args.skip_nodes else cfg.overload_duration_s,
                     'qos_reliability': args.qos_reliability, 'qos_depth': args.qos_depth,
                     'threads': threads,
                     'ros_domain_id': domain,
                     'model_inputs': {n: {'frames': MODELS[n][3]} for n in names}},
        'frames': frames_info,
        'models': rows,
        'ratios': _ratios(rows),
        'fastest_engine': fastest,
        'nodes': nodes_rows,
        'overload': overload_rows,
        'errors': errors,
        'seconds': round(time.monotonic() - t_start, 1),
    }
    report = render_report(result)
    text = json.dumps(result, indent=2, allow_nan=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + '\n')
    if args.json:
        print(report, file=sys.stderr, flush=True)
        print(text, flush=True)
    else:
        print(report, flush=True)
        if args.out:
            print(f'JSON written to {args.out}')
    ok = bool(rows) and (args.skip_nodes or (len(nodes_rows) == len(node_models) and
                                             len(overload_rows) == len(node_models)))
    return 0 if ok else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='python -m bench.runner', description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
