"""The one user-error base class and the one exit path of every tool (no mm imports).

Everything a user can fix (a file, an option, a config value) raises a subclass of
:class:`UserError` with a one-line message; :func:`exit_code_of` runs a tool's job and turns
such an error into one ``error:`` line on stderr and exit code 2, never a traceback.
Every part of the package may import this module (it imports nothing of ours).
"""
import re
import sys
from typing import Callable, Optional


class UserError(Exception):
    """Bad input that the user can fix; its message is one line."""


class CheckpointError(UserError, ValueError):
    """A user-facing problem with a checkpoint file; its message is one line."""


def one_line(err: BaseException) -> str:
    """The first line of ``err``'s message, without the "class `X` in module.py: " prefixes
    that mmengine's registry adds for each level of nested builds."""
    message = re.sub(r'(class `\w+` in [\w./-]+: )+', '', str(err)).strip()
    return message.splitlines()[0][:400] if message else type(err).__name__


def exit_code_of(job: Callable[[], Optional[int]], prog: Optional[str] = None) -> int:
    """Run a tool's job: its return code (0 if None), or 2 with one ``error:`` line for a
    :class:`UserError`. ``prog`` prefixes the line (``convert_to_backbone_weights: error: ...``)."""
    try:
        code = job()
    except UserError as err:
        prefix = f'{prog}: ' if prog else ''
        print(f'{prefix}error: {one_line(err)}', file=sys.stderr, flush=True)
        return 2
    return 0 if code is None else int(code)
