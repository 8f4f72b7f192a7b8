"""`spacenav bench`: predictor, node and overload benchmarks (code in the source tree's bench/).

bench/ lives at the top of the source checkout, not in the installed package: this command
imports it from ``spacenav_perception.paths.SOURCE_ROOT / 'bench'`` and says so plainly when the
checkout is not there (e.g. an installed, non-editable package).
"""
import sys

DESCRIPTION = (
    'Benchmark the predictors (preprocess + model + postprocess, batch 1, per model, engine and '
    'device, on rendered frames), the nodes end to end over DDS in separate processes (beside a '
    'passthrough node) and the nodes under 200 Hz overload. Prints a table; --json prints one '
    'JSON object on stdout. See bench/RESULTS.md.')


def _load_runner():
    from spacenav_perception.paths import SOURCE_ROOT
    bench_dir = SOURCE_ROOT / 'bench'
    if not (bench_dir / 'runner.py').is_file():
        raise SystemExit(
            f'spacenav bench: the benchmark code is not available ({bench_dir}/runner.py is '
            'missing). It lives in the source checkout, not in the installed package: run it '
            'from a checkout installed with `pip install -e .` (or `make install`).')
    root = str(SOURCE_ROOT)
    if root not in sys.path:
        sys.path.insert(0, root)
    import importlib
    module = importlib.import_module('bench.runner')
    if not str(module.__file__).startswith(str(bench_dir)):
        raise SystemExit(f'spacenav bench: imported {module.__file__}, not {bench_dir}/runner.py '
                         '(another module named "bench" shadows it)')
    return module


def _add_arguments_lazily(parser) -> None:
    """The options are defined by bench/runner.py; parse them there when it is available."""
    try:
        _load_runner().add_arguments(parser)
    except SystemExit as exc:  # keep `spacenav --help` working without the checkout
        parser.set_defaults(_bench_unavailable=str(exc))


def register(subparsers) -> None:
    parser = subparsers.add_parser('bench', help='benchmark models, nodes and overload',
                                   description=DESCRIPTION)
    _add_arguments_lazily(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    unavailable = getattr(args, '_bench_unavailable', None)
    if unavailable:
        print(unavailable, file=sys.stderr)
        return 2
    return _load_runner().run(args)
