"""Every `spacenav` option documents itself: each has help text, and --help never prints a
meaningless "(default: None)" for options whose absence means something the help explains."""
import argparse
import re

from spacenav_perception.cli import build_parser


def _leaf_parsers(parser, path=()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for sub in subs:
        for name, child in sub.choices.items():
            yield from _leaf_parsers(child, path + (name,))


def test_every_option_has_help_and_no_default_none():
    leaves = list(_leaf_parsers(build_parser()))
    names = {' '.join(path) for path, _ in leaves}
    assert {'eval centroid', 'eval segmentation', 'train centroid', 'train segmentation',
            'synth asteroid', 'synth lunar', 'export', 'demo'} <= names
    problems = []
    for path, parser in leaves:
        for action in parser._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            if not action.help:
                problems.append(f"{' '.join(path)} {'/'.join(action.option_strings)}: no help")
        text = parser.format_help()
        if re.search(r'\(default:\s+None\)', text):
            problems.append(f"{' '.join(path)}: prints '(default: None)'")
    assert not problems, '\n'.join(problems)
