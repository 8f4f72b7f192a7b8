"""The `spacenav` sub-commands, one module each."""
import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to an option's help only where it says something: not for
    required options, flags, or ``default=None`` (whose meaning the help text states), and not
    where the help already names its default."""

    def _get_help_string(self, action):
        text = action.help or ''
        if (action.default is None or action.required or action.nargs == 0
                or 'default' in text):
            return text
        return super()._get_help_string(action)
