"""Run several tools' ``main(argv)`` one after another in one process, as their ``__main__``
blocks would, and print what each did as json (exit code, stdout, stderr, with a traceback for
any exception that escaped). tests/test_bad_input.py uses it so that the table's rows share one
start-up (torch, mmdet and mmseg imports) instead of paying for it per row.

    python tests/cli_batch.py < rows.json    # rows: [[tools/x.py or tools/analysis/y.py, [arguments...]], ...]

Each tool is imported as its module of the installed package (mm_efficient_backbones.tools.x),
once, as the console scripts do.
"""
import contextlib
import importlib
import io
import json
import sys
import traceback


def run(tool: str, argv: list) -> dict:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            module = 'mm_efficient_backbones.' + tool[:-len('.py')].replace('/', '.')
            code = importlib.import_module(module).main(argv)
        except SystemExit as exit_:
            # What the interpreter does with sys.exit(value): a message goes to stderr, status 1.
            code = exit_.code if isinstance(exit_.code, int) or exit_.code is None else 1
            if not isinstance(exit_.code, int) and exit_.code is not None:
                print(exit_.code, file=sys.stderr)
        except BaseException:  # noqa: BLE001  what a user would see as a traceback
            traceback.print_exc()
            code = 1
    return dict(code=code or 0, stdout=out.getvalue(), stderr=err.getvalue())


if __name__ == '__main__':
    print(json.dumps([run(tool, argv) for tool, argv in json.load(sys.stdin)]))
