"""Best COCO / ADE20K results from MMDetection and MMSegmentation json logs (legacy mmdet 2.x /
mmseg 0.x ``*.log.json`` or mmengine ``vis_data/scalars.json``, auto-detected per file), in
percent; the reading lives in mm_common/logs.py.

Usage::

    # Best primary metric of each log (bbox_mAP for detection, mIoU for
    # segmentation) as "41.7 path" lines sorted by path, like the jq
    # one-liners.
    python tools/log_results.py detection/logs segmentation/logs
    python -m mm_efficient_backbones.tools.log_results work_dirs/mask-rcnn_m3 --metric segm_mAP
    log-results logs/ --table            # markdown, the README columns
    log-results logs/ --json             # machine-readable results
    log-results logs/ --plot curves.png  # metric curves and training loss
    log-results logs/ --verbose          # the format of each log, on stderr

Exit status: 0 when at least one log had results, 1 when none had, 2 on bad
input (missing path, unknown metric).
"""
import argparse
import os
import sys
from pathlib import Path

from mm_efficient_backbones.backbones.errors import exit_code_of
from mm_efficient_backbones.mm_common.logs import PROG, report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description='Best COCO / ADE20K results from mmdet/mmseg json logs '
        '(legacy *.log.json or mmengine vis_data/*.json), in percent.')
    parser.add_argument('paths', nargs='+', type=Path, metavar='PATH',
                        help='json log files or folders (e.g. work_dirs)')
    parser.add_argument('--metric', help='metric to rank by, e.g. segm_mAP, '
                        'coco/bbox_mAP_50, aAcc (default: bbox_mAP for '
                        'detection, mIoU for segmentation)')
    output = parser.add_mutually_exclusive_group()
    output.add_argument('--table', action='store_true',
                        help='print markdown tables with the README columns')
    output.add_argument('--json', action='store_true',
                        help='print machine-readable json')
    parser.add_argument('--plot', type=Path, metavar='PNG',
                        help='also save metric curves and training loss')
    parser.add_argument('-v', '--verbose', action='store_true',
                        help='report the format of each log on stderr')
    return parser.parse_args(argv)


def write_stdout(text: str) -> None:
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # The reader (e.g. head) stopped early: that is fine, but Python would
        # report the failing flush of stdout at exit, so point it at devnull.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return exit_code_of(lambda: report(args.paths, args.metric, args.table, args.json, args.plot,
                                       args.verbose, write=write_stdout), prog=PROG)


if __name__ == '__main__':
    sys.exit(main())
