"""`spacenav`: one command, many subcommands.

Each subcommand lives in spacenav_perception/commands/<name>.py and exposes
`register(subparsers)` (adds its parser, sets `func`) so that importing the CLI stays cheap
(heavy modules are imported inside the command functions).
"""
import argparse
import importlib
import shlex
import sys

SUBCOMMANDS = ('run', 'synth', 'train', 'eval', 'calibrate', 'export', 'bag', 'bench', 'demo')


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='spacenav',
        description='spacenav_perception: synthetic data, training, evaluation, export, '
                    'bags, benchmarks and the in-process node runner.')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f'spacenav_perception.commands.{name}')
        except ModuleNotFoundError as exc:
            if exc.name != f'spacenav_perception.commands.{name}':
                raise
            continue
        module.register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    # the command as given, for the run folders and manifests that record how they were made
    # (also when main() is called with an argument list instead of from the shell)
    args.command_line = 'spacenav ' + ' '.join(shlex.quote(str(a)) for a in argv)
    if not getattr(args, 'func', None):
        parser.print_help()
        return 2
    from spacenav_perception.core.manifest import ModelIntegrityError
    from spacenav_perception.data.problems import UnusableDataset
    try:
        return int(args.func(args) or 0)
    except (ModelIntegrityError, UnusableDataset) as exc:
        # a model file or dataset the user named cannot be used: say so, no traceback
        print(f'spacenav {args.command}: error: {exc}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
