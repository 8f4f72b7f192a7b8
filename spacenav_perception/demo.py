"""`spacenav demo`: render -> bag -> replay through the nodes -> live evaluation -> table + pictures.

On a fresh clone (`make demo`), CPU only:
  1. renders a small asteroid set and a small lunar set (synth renderers) into OUT/data/,
  2. converts them into MCAP bags (OUT/bags/asteroid, OUT/bags/lunar) with `bag make`,
  3. replays each bag through the graph of config/replay.yaml, built by the graph runner in this
     one process: asteroid bag -> replay_node -> centroid_node -> eval_node, lunar bag ->
     replay_node -> hazard_node -> eval_node, with the shipped models (models/centroid.ts,
     models/hazard.ts) unless --model-centroid / --model-hazard say otherwise,
  4. prints a table (frames, centroid error, hazard IoU / segmentation mIoU, answers per second,
     latency) and writes pictures:
        OUT/centroid_contact_sheet.png   centroid overlays, prediction red, truth green
        OUT/hazard_overlays.png          predicted hazard red, true hazard outlined green
        OUT/centroid_error_hist.png      centroid error histogram
        OUT/demo_summary.json            every figure of the table (+ the eval reports)

Latency in the table is measured by the eval node: answer receipt - receipt of the same-stamp
image at the eval node (both in this process, one clock), so it includes DDS transport of the
answer; the nodes' own processing latency (subscription callback -> publish, from their
/diagnostics) is shown next to it.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

PICTURES = {'centroid_contact_sheet.png': 'asteroid', 'centroid_error_hist.png': 'asteroid',
            'centroid_worst.png': 'asteroid', 'hazard_overlays.png': 'lunar',
            'hazard_worst.png': 'lunar'}


@dataclass
class DemoConfig:
    out: Path = Path('demo_out')
    n_asteroid: int = 12
    n_lunar: int = 8
    asteroid_size: int = 1024
    lunar_width: int = 720
    lunar_height: int = 480
    seed: int = 2024
    rate_hz: float = 4.0          # asteroid frames (centroid_node answers in 5-20 ms here)
    lunar_rate_hz: float = 2.0    # lunar frames (hazard_node takes 100-250 ms on 2 CPU cores)
    queue_depth: int = 1
    model_centroid: str = ''
    model_hazard: str = ''
    device: str = 'auto'
    render_device: str = 'auto'
    progress: bool = True
    answer_wait_s: float = 30.0


class DemoError(RuntimeError):
    """A demo that cannot run (missing model, bad arguments); the message says what to do."""


def quick(config: DemoConfig) -> DemoConfig:
    """The --quick sizes: a few small frames (about a minute on two CPU cores)."""
    config.n_asteroid = min(config.n_asteroid, 6)
    config.n_lunar = min(config.n_lunar, 3)
    config.asteroid_size = 256
    config.lunar_width, config.lunar_height = 240, 160
    config.rate_hz = max(config.rate_hz, 4.0)
    config.lunar_rate_hz = max(config.lunar_rate_hz, 4.0)
    return config


def replay_rate(config: DemoConfig, kind: str) -> float:
    """Frames per second at which `kind` ('asteroid' or 'lunar') is recorded and replayed."""
    return config.lunar_rate_hz if kind == 'lunar' else config.rate_hz


# ----------------------------------------------------------------------------- models

def resolve_models(config: DemoConfig) -> dict:
    """{'centroid': Path, 'hazard': Path} verified (file, manifest, sha256) or DemoError."""
    from spacenav_perception.core.manifest import ModelIntegrityError, load_manifest
    from spacenav_perception.paths import packaged_model_path
    models = {}
    needed = {'centroid': (config.model_centroid, config.n_asteroid, '--model-centroid'),
              'hazard': (config.model_hazard, config.n_lunar, '--model-hazard')}
    for name, (given, n, flag) in needed.items():
        if n <= 0:
            continue
        path = Path(given) if given else packaged_model_path(name)
        task = 'centroid' if name == 'centroid' else 'segmentation'
        if not path.is_file():
            shipped = '' if given else ' (the shipped model)'
            raise DemoError(
                f'the {name} model {path}{shipped} is missing. Make it with `spacenav train '
                f'{"centroid" if name == "centroid" else "hazard"} ...` + `spacenav export ...` '
                f'(README, "Training"), pull it with `git lfs pull` if models/ holds LFS '
                f'pointers, or run the demo with {flag} PATH (for a smoke test, a reference '
                f'model: python -m spacenav_perception.nets.reference '
                f'{"centroid" if name == "centroid" else "segmentation"} OUT_DIR 256 256).')
        try:
            load_manifest(path, expected_task=task)
        except ModelIntegrityError as exc:
            raise DemoError(f'the {name} model cannot be used: {exc}') from None
        models[name] = path
    return models


# ----------------------------------------------------------------------------- data

def _render_asteroid(config: DemoConfig, out: Path) -> Path:
    from spacenav_perception.synth import asteroid
    directory = out / 'data' / 'asteroid'
    if _asteroid_ready(directory, config):
        print(f'[demo] reusing {directory} ({config.n_asteroid} frames)')
        return directory
    if directory.exists():
        shutil.rmtree(directory)
    print(f'[demo] rendering {config.n_asteroid} asteroid frames ({config.asteroid_size} px) '
          f'-> {directory}')
    asteroid.render_dataset(directory, config.n_asteroid, config.seed, size=config.asteroid_size,
                            device=config.render_device, progress=config.progress)
    _write_stamp(directory, config, 'asteroid')
    return directory


def _render_lunar(config: DemoConfig, out: Path) -> Path:
    from spacenav_perception.synth import lunar
    directory = out / 'data' / 'lunar'
    if _lunar_ready(directory, config):
        print(f'[demo] reusing {directory} ({config.n_lunar} frames)')
        return directory
    if directory.exists():
        shutil.rmtree(directory)
    print(f'[demo] rendering {config.n_lunar} lunar frames ({config.lunar_width}x'
          f'{config.lunar_height}) -> {directory}')
    lunar.render_dataset(directory, config.n_lunar, config.seed, width=config.lunar_width,
                         height=config.lunar_height, device=config.render_device,
                         progress=config.progress)
    _write_stamp(directory, config, 'lunar')
    return directory


def _data_key(config: DemoConfig, kind: str) -> dict:
    if kind == 'asteroid':
        return {'n': config.n_asteroid, 'size': config.asteroid_size, 'seed': config.seed}
    return {'n': config.n_lunar, 'width': config.lunar_width, 'height': config.lunar_height,
            'seed': config.seed}


def _write_stamp(directory: Path, config: DemoConfig, kind: str) -> None:
    (directory / 'demo_render.json').write_text(json.dumps(_data_key(config, kind)))


def _stamp_matches(directory: Path, config: DemoConfig, kind: str) -> bool:
    try:
        return json.loads((directory / 'demo_render.json').read_text()) == \
            _data_key(config, kind)
    except (OSError, ValueError):
        return False


def _asteroid_ready(directory: Path, config: DemoConfig) -> bool:
    return (directory / 'labels.csv').is_file() and _stamp_matches(directory, config,
                                                                   'asteroid')


def _lunar_ready(directory: Path, config: DemoConfig) -> bool:
    return (directory / 'meta.csv').is_file() and _stamp_matches(directory, config, 'lunar')


def _make_bag(data: Path, bag: Path, config: DemoConfig, rate_hz: float) -> Path:
    from spacenav_perception.bags.bag_writer import make_bag
    summary = make_bag(data, bag, storage='mcap', overwrite=True, progress=config.progress,
                       rate_hz=rate_hz)
    print(f'[demo] bag {bag}: {summary.frames} frames, {summary.messages} messages')
    if summary.problems_summary:
        print(summary.problems_summary)
    return bag


# ----------------------------------------------------------------------------- replay

def replay_through_graph(bag: Path, *, task: str, model: Path, eval_dir: Path,
                         config: DemoConfig) -> dict:
    """Replay `bag` through replay_node -> {centroid|hazard}_node -> eval_node in this process.

    Returns the eval summary (plus 'outputs': written files). Waits until the replay has ended
    and the node has answered every frame it will answer (no new answer for 2 s, at most
    `answer_wait_s`), then writes the evaluation.
    """
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from tqdm import tqdm

    from spacenav_perception.graph.graph_config import resolve
    from spacenav_perception.graph.runner import ExecutorThread, create_graph_nodes

    overrides = {
        'bag': str(bag), 'stamp_mode': 'now',
        'rate_hz': str(replay_rate(config, 'asteroid' if task == 'centroid' else 'lunar')),
        'qos_depth': str(config.queue_depth),
        'use_centroid': str(task == 'centroid').lower(),
        'use_hazard': str(task == 'hazard').lower(),
        'wait_for_subscribers': '2', 'done_delay_s': '0.0', 'device': config.device,
        'eval_output_dir': str(eval_dir),
        'centroid_model' if task == 'centroid' else 'hazard_model': str(model)}
    entries = resolve('replay', overrides)
    if config.progress:   # the progress bar replaces the replay node's progress log lines
        rclpy.logging.set_logger_level('replay_node', rclpy.logging.LoggingSeverity.WARN)
    nodes = create_graph_nodes(entries)
    by_name = {node.get_name(): node for node in nodes}
    replay, evaluator_node = by_name['replay_node'], by_name['eval_node']
    worker = by_name['centroid_node' if task == 'centroid' else 'hazard_node']
    executor = MultiThreadedExecutor()
    for node in nodes:
        executor.add_node(node)
    spinner = ExecutorThread(executor, name='demo-executor').start()
    ev = evaluator_node.evaluator
    matcher = ev.centroid if task == 'centroid' else ev.hazard
    total = replay._total or 0
    try:
        with tqdm(total=total, unit='frame', desc=f'replay {task}',
                  disable=not config.progress) as bar:
            last = 0
            while not replay.done.is_set():
                time.sleep(0.1)
                if spinner.stopped.is_set():     # a callback raised: say so instead of waiting
                    raise DemoError(f'the node graph stopped: {spinner.failure!r}')
                now = replay.published
                if now != last:
                    bar.update(now - last)
                    last = now
                c = matcher.counters()
                bar.set_postfix(answered=c['pred_received'], matched=c['matched'],
                                refresh=False)
            bar.update(replay.published - last)
        # The replay has ended; let the node answer what it still holds.
        deadline = time.monotonic() + config.answer_wait_s
        previous, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            received = matcher.pred.received
            if received != previous:
                previous, quiet_since = received, time.monotonic()
            counters = matcher.counters()
            if counters['pending_truth'] == 0 and counters['truth_received'] >= replay.published:
                break
            if time.monotonic() - quiet_since > 2.0:
                break
            time.sleep(0.05)
        outputs = evaluator_node.write_outputs()
        summary = evaluator_node.summary()
        summary['outputs'] = {k: str(v) for k, v in outputs.items()}
        summary['frames_published'] = replay.published
        health = getattr(worker, 'health', None)
        if health is not None:
            p50, p95 = health.latency_ms()
            summary['node_processing_latency'] = {'p50_ms': p50, 'p95_ms': p95,
                                                  'counters': health.counters()}
        return summary
    finally:
        spinner.stop(timeout_s=10.0)
        for node in nodes:
            node.destroy_node()


# ----------------------------------------------------------------------------- table

def _fmt(value, digits=2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '-'
    return f'{value:.{digits}f}'


def format_table(results: dict) -> str:
    rows = []
    a, l = results.get('asteroid'), results.get('lunar')
    if a:
        c, lat = a['centroid'], a['latency']['centroid']
        proc = a.get('node_processing_latency', {})
        rows += [
            ('centroid_node (asteroid)', ''),
            ('  frames replayed / matched / missed',
             f"{a['frames_published']} / {c['matched']} / {c['missed']}"),
            ('  centroid error mean / median / p95 [px]',
             f"{_fmt(c['error_px_mean'])} / {_fmt(c['error_px_median'])} / "
             f"{_fmt(c['error_px_p95'])}"),
            ('  answers per second', _fmt(lat['answers_per_s'], 1)),
            ('  latency p50 / p95 [ms] (eval: image -> answer)',
             f"{_fmt(lat['p50_ms'], 1)} / {_fmt(lat['p95_ms'], 1)}"),
            ('  latency p50 / p95 [ms] (node: callback -> publish)',
             f"{_fmt(proc.get('p50_ms'), 1)} / {_fmt(proc.get('p95_ms'), 1)}")]
    if l:
        h, g = l['hazard'], l['segmentation']
        lat = l['latency']['hazard']
        proc = l.get('node_processing_latency', {})
        per_class = ', '.join(f'{k} {_fmt(v)}' for k, v in g['per_class_iou'].items())
        rows += [
            ('hazard_node (lunar)', ''),
            ('  frames replayed / matched / missed',
             f"{l['frames_published']} / {h['matched']} / {h['missed']}"),
            ('  hazard IoU (pooled) / mean per frame',
             f"{_fmt(h['iou_pooled'], 3)} / {_fmt(h['iou_mean_per_frame'], 3)}"),
            ('  segmentation mIoU', _fmt(g['miou'], 3) + (
                '' if g['matched'] == h['matched'] else
                f" (over the {g['matched']} frames whose /segmentation arrived)")),
            ('  per-class IoU', per_class),
            ('  answers per second', _fmt(lat['answers_per_s'], 1)),
            ('  latency p50 / p95 [ms] (eval: image -> answer)',
             f"{_fmt(lat['p50_ms'], 1)} / {_fmt(lat['p95_ms'], 1)}"),
            ('  latency p50 / p95 [ms] (node: callback -> publish)',
             f"{_fmt(proc.get('p50_ms'), 1)} / {_fmt(proc.get('p95_ms'), 1)}")]
    width = max(len(r[0]) for r in rows) + 2
    lines = ['=' * (width + 30)]
    lines += [f'{name:<{width}}{value}' for name, value in rows]
    lines.append('=' * (width + 30))
    return '\n'.join(lines)


# ----------------------------------------------------------------------------- main

def run_demo(config: DemoConfig) -> dict:
    """The whole demo; returns the summary written to OUT/demo_summary.json."""
    import rclpy

    from spacenav_perception.ros_env import ensure_local_dds

    start = time.monotonic()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if config.n_asteroid <= 0 and config.n_lunar <= 0:
        raise DemoError('nothing to do: --n-asteroid and --n-lunar are both 0')
    models = resolve_models(config)       # fail fast, before minutes of rendering
    print('[demo] models: ' + ', '.join(f'{k} {v}' for k, v in models.items()))
    timings = {}
    data, bags = {}, {}
    t = time.monotonic()
    if config.n_asteroid > 0:
        data['asteroid'] = _render_asteroid(config, out)
    if config.n_lunar > 0:
        data['lunar'] = _render_lunar(config, out)
    timings['render_s'] = time.monotonic() - t
    t = time.monotonic()
    for kind, directory in data.items():
        bags[kind] = _make_bag(directory, out / 'bags' / kind, config, replay_rate(config, kind))
    timings['bags_s'] = time.monotonic() - t

    ensure_local_dds()
    own_init = not rclpy.ok()
    if own_init:
        rclpy.init(args=[])
    results = {}
    try:
        t = time.monotonic()
        if 'asteroid' in bags:
            print(f'[demo] replaying {bags["asteroid"]} through centroid_node + eval_node')
            results['asteroid'] = replay_through_graph(
                bags['asteroid'], task='centroid', model=models['centroid'],
                eval_dir=out / 'eval_asteroid', config=config)
        if 'lunar' in bags:
            print(f'[demo] replaying {bags["lunar"]} through hazard_node + eval_node')
            results['lunar'] = replay_through_graph(
                bags['lunar'], task='hazard', model=models['hazard'],
                eval_dir=out / 'eval_lunar', config=config)
        timings['replay_s'] = time.monotonic() - t
    finally:
        if own_init:
            rclpy.try_shutdown()

    pictures = {}
    for name, kind in PICTURES.items():
        src = out / f'eval_{kind}' / name
        if kind in results and src.is_file():
            shutil.copyfile(src, out / name)
            pictures[name] = str(out / name)
    timings['total_s'] = time.monotonic() - start
    summary = {'config': {k: str(v) for k, v in vars(config).items()},
               'models': {k: str(v) for k, v in models.items()}, 'timings': timings,
               'results': results, 'pictures': pictures,
               'latency_definition': ('eval: answer receipt - receipt of the same-stamp image '
                                      'at the eval node; node: subscription callback -> '
                                      'publish (the node\'s own /diagnostics)')}
    from spacenav_perception.evaluation.online_metrics import _jsonable
    (out / 'demo_summary.json').write_text(json.dumps(_jsonable(summary), indent=2))
    print()
    print(format_table(results))
    print(f'[demo] finished in {timings["total_s"]:.0f} s (render {timings["render_s"]:.0f} s, '
          f'bags {timings["bags_s"]:.0f} s, replay {timings["replay_s"]:.0f} s)')
    for name, path in pictures.items():
        print(f'[demo] picture: {path}')
    print(f'[demo] summary: {out / "demo_summary.json"}')
    return summary
