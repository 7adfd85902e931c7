"""Reading MMDetection and MMSegmentation json logs: their best COCO / ADE20K results,
tables, json and curves.

Both log formats are read, auto-detected per file:

* legacy mmdet 2.x / mmseg 0.x ``*.log.json``: an env_info/config header line,
  then one record per line with ``"mode": "train"`` or ``"val"``; metrics are
  fractions.
* mmengine (mmdet 3.x / mmseg 1.x) ``<work_dir>/<timestamp>/vis_data/
  scalars.json`` or ``<timestamp>.json``: records carry ``step``; COCO metrics
  are fractions, mmseg metrics percentages. A test run (tools/test.py) writes
  one record without ``step`` to ``<work_dir>/<timestamp>/<timestamp>.json``.

Metrics keep the ``tta/`` prefix that ``tools/test.py --tta`` gives them
(``tta/mIoU``, multi-scale and flip), so that they never mix with the
single-scale ones; the COCO ``coco/`` prefix is dropped (``bbox_mAP``).

Every value is reported in percent. Folders are searched recursively for json
logs; of an mmengine work_dir holding several timestamped runs only the newest
run is read. Bad lines are skipped with a warning on stderr.

Used by tools/log_results.py (``log-results``); no mm imports.
"""
import itertools
import json
import math
import sys
from array import array
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Iterable, Iterator

from mm_efficient_backbones.backbones.errors import UserError


PROG = 'log-results'
TASK_PRIMARY_METRICS = {'detection': 'bbox_mAP', 'segmentation': 'mIoU'}
# The prefix of test-time-augmented metrics (mm_common.tta.TTA_METRIC_PREFIX; no mm imports here).
TTA_PREFIX = 'tta/'
# What a val record's step counts when the log itself does not say.
TASK_UNITS = {'detection': 'epoch', 'segmentation': 'iter'}
# (column title, metric) as published in the backbone READMEs.
TABLE_COLUMNS = {
    'detection': (('APb', 'bbox_mAP'), ('AP50b', 'bbox_mAP_50'),
                  ('AP75b', 'bbox_mAP_75'), ('APm', 'segm_mAP'),
                  ('AP50m', 'segm_mAP_50'), ('AP75m', 'segm_mAP_75')),
    'segmentation': (('mIoU', 'mIoU'), ('aAcc', 'aAcc'), ('mAcc', 'mAcc')),
}
# Columns added to a table where its logs have test-time-augmented results.
TTA_COLUMNS = {'detection': (('APb tta', 'tta/bbox_mAP'), ('APm tta', 'tta/segm_mAP')),
               'segmentation': (('mIoU tta', 'tta/mIoU'),)}
# Record keys about the schedule or speed, never evaluation results.
BOOKKEEPING_KEYS = frozenset(
    {'mode', 'step', 'epoch', 'iter', 'lr', 'time', 'data_time', 'memory'})
# mmseg 1.x IoUMetric logs these in percent; all other metrics are fractions.
MMSEG_PERCENT_METRICS = frozenset(
    {'aAcc', 'mIoU', 'mAcc', 'mDice', 'mFscore', 'mPrecision', 'mRecall'})
FORMAT_NAMES = {
    'legacy': 'legacy json log (mmdet 2.x / mmseg 0.x)',
    'mmengine': 'mmengine json scalars (mmdet 3.x / mmseg 1.x)',
}
UNIT_NAMES = {'epoch': 'epoch', 'iter': 'iteration', 'test': 'test run'}
# Longest first line read to tell whether a json file is a log: a legacy
# header line holds the whole config (13 kB in the published logs).
SNIFF_LIMIT = 16 * 1024 * 1024
MAX_LINE_WARNINGS = 5


class UsageError(UserError):
    """Bad command line input, reported as one ``error:`` line without a traceback."""


def warn(message: str) -> None:
    print(f'{PROG}: {message}', file=sys.stderr)


def is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def metric_name(key: str) -> str:
    """Legacy spelling of a metric: 'coco/bbox_mAP' -> 'bbox_mAP'; a test-time-augmented
    one keeps its prefix: 'tta/coco/bbox_mAP' -> 'tta/bbox_mAP', 'tta/mIoU' stays."""
    base = key.rsplit('/', 1)[-1]
    return TTA_PREFIX + base if key.startswith(TTA_PREFIX) else base


def format_percent(value: float) -> str:
    """One decimal, rounded half-up (a float 41.65 is 41.6499.. in binary)."""
    exact = Decimal(repr(round(value, 6)))
    return str(exact.quantize(Decimal('0.1'), rounding=ROUND_HALF_UP))


def task_of(metrics: dict[str, float]) -> str | None:
    for task, metric in TASK_PRIMARY_METRICS.items():
        if metric in metrics or TTA_PREFIX + metric in metrics:
            return task
    return None


def is_test_result(record: dict) -> bool:
    """An mmengine test run's one record: metrics, no step (tools/test.py)."""
    return 'step' not in record and any(
        metric_name(key).removeprefix(TTA_PREFIX) in TASK_PRIMARY_METRICS.values() for key in record)


def default_unit(metrics: dict[str, float]) -> str:
    return TASK_UNITS.get(task_of(metrics), 'epoch')


@dataclass
class Evaluation:
    step: int | None  # epoch or training iteration, see Run.unit
    metrics: dict[str, float]  # percent


@dataclass
class Run:
    """One training run: a log file, or one of several runs appended to it."""
    path: Path
    fmt: str  # 'legacy' or 'mmengine'
    number: int | None = None  # set when the file holds several runs
    unit: str | None = None  # what Evaluation.step counts: 'epoch' or 'iter'
    evaluations: list[Evaluation] = field(default_factory=list)
    # Compact arrays: long logs have hundreds of thousands of train records.
    loss_steps: array = field(default_factory=lambda: array('d'))
    loss_values: array = field(default_factory=lambda: array('d'))

    @property
    def suffix(self) -> str:
        return f'#run{self.number}' if self.number else ''

    @property
    def label(self) -> str:
        return f'{self.path}{self.suffix}'

    @property
    def short_name(self) -> str:
        """Legend name: the work_dir for mmengine, else the file stem."""
        if self.path.parent.name == 'vis_data':
            name = self.path.resolve().parents[2].name
        else:
            name = self.path.name.split('.')[0]
        return name + self.suffix

    @property
    def task(self) -> str | None:
        if not self.evaluations:
            return None
        return task_of(self.evaluations[0].metrics)

    @property
    def is_empty(self) -> bool:
        return not (self.evaluations or self.loss_steps)

    def add_loss(self, step: float, loss: float) -> None:
        self.loss_steps.append(step)
        self.loss_values.append(loss)


def read_records(path: Path) -> Iterator[dict]:
    """Yield the JSON object on each line, streaming; warn about bad lines."""
    bad_lines = 0
    empty = True
    with open(path, encoding='utf-8', errors='replace') as lines:
        for line_no, line in enumerate(lines, 1):
            if line.isspace():
                continue
            empty = False
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if isinstance(record, dict):
                yield record
                continue
            bad_lines += 1
            if bad_lines <= MAX_LINE_WARNINGS:
                warn(f'{path}:{line_no}: skipping line that is not a JSON '
                     'object (truncated or not a log line)')
    if empty:
        warn(f'{path}: empty file, skipped')
    elif bad_lines > MAX_LINE_WARNINGS:
        warn(f'{path}: skipped {bad_lines - MAX_LINE_WARNINGS} more bad lines')


def detect_format(record: dict) -> str | None:
    if 'env_info' in record or 'mode' in record:
        return 'legacy'
    if 'step' in record or is_test_result(record):
        return 'mmengine'
    return None


def looks_like_log(path: Path) -> bool:
    """Whether the first line of a json file is a training log record."""
    try:
        with open(path, encoding='utf-8', errors='replace') as file:
            line = file.readline(SNIFF_LIMIT)
            while line.isspace():
                line = file.readline(SNIFF_LIMIT)
            record = json.loads(line)
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(record, dict) and detect_format(record) is not None


def find_logs(folder: Path, verbose: bool) -> list[Path]:
    """Json logs below folder: every legacy log and, of each mmengine
    work_dir, the newest run."""
    logs = []
    # work_dir -> run dir (<timestamp>) -> json files in its vis_data
    work_dirs = defaultdict(lambda: defaultdict(list))
    for path in sorted(folder.rglob('*.json')):
        if path.parent.name == 'vis_data':
            run_dir = path.parent.parent
            work_dirs[run_dir.parent][run_dir].append(path)
        elif looks_like_log(path):
            logs.append(path)
        elif verbose:
            warn(f'{path}: not a training log, skipped')
    for work_dir, runs in work_dirs.items():
        # mmengine names run directories by start time, so names sort by age.
        newest = max(runs)
        if len(runs) > 1:
            warn(f'{work_dir}: {len(runs)} mmengine runs, using the newest: '
                 f'{newest.name}')
        # scalars.json and <timestamp>.json hold the same records.
        files = {path.name: path for path in runs[newest]}
        logs.append(files.get('scalars.json', runs[newest][0]))
    return sorted(logs)


def collect_log_files(paths: list[Path], verbose: bool) -> list[Path]:
    for path in paths:
        if not path.exists():
            raise UsageError(f'no such file or directory: {path}')
    files = []
    for path in paths:
        if path.is_dir():
            found = find_logs(path, verbose)
            if not found:
                warn(f'{path}: no json logs found')
            files += found
        else:
            files.append(path)
    return list(dict.fromkeys(files))


def evaluation_metrics(record: dict, fmt: str) -> dict[str, float]:
    """The numeric metrics of a val record, in percent."""
    metrics = {}
    for key, value in record.items():
        if key in BOOKKEEPING_KEYS or not is_number(value):
            continue
        name = metric_name(key)
        in_percent = fmt == 'mmengine' and name.removeprefix(TTA_PREFIX) in MMSEG_PERCENT_METRICS
        metrics[name] = round(value if in_percent else value * 100, 6)
    return metrics


def legacy_unit(config: str | None, metrics: dict[str, float]) -> str:
    if 'IterBasedRunner' in (config or ''):
        return 'iter'
    if 'EpochBasedRunner' in (config or ''):
        return 'epoch'
    return default_unit(metrics)


def parse_legacy(path: Path, records: Iterable[dict]) -> list[Run]:
    """Read a legacy log. A further env_info header starts a new run, as when
    the logs of several trainings were appended to one file."""
    runs: list[Run] = []
    config = None  # the current run's config text, None before its header
    # Epoch-based runners restart "iter" every epoch; these make it global.
    iters_before_epoch = last_iter = 0
    for record in records:
        is_header = 'env_info' in record
        # A header begins a new run once the current one has a header or
        # records (a log may lack its header line).
        run_started = bool(runs) and (config is not None
                                      or not runs[-1].is_empty)
        if not runs or is_header and run_started:
            runs.append(Run(path, 'legacy'))
            config = None
            iters_before_epoch = last_iter = 0
        run = runs[-1]
        if is_header:
            config = str(record.get('config', ''))
        elif record.get('mode') == 'train' and is_number(record.get('iter')):
            if record['iter'] < last_iter:
                iters_before_epoch += last_iter
            last_iter = record['iter']
            if is_number(record.get('loss')):
                run.add_loss(iters_before_epoch + last_iter, record['loss'])
        # mmdet 2.x also logs validation losses as "val" records.
        elif record.get('mode') == 'val' and 'loss' not in record:
            metrics = evaluation_metrics(record, 'legacy')
            if not metrics:
                continue
            run.unit = run.unit or legacy_unit(config, metrics)
            # The "iter" of a val record is the length of the val loader, so
            # an iter-based evaluation sits at the last logged train iteration.
            step = (record.get('epoch') if run.unit == 'epoch' else
                    iters_before_epoch + last_iter)
            run.evaluations.append(Evaluation(step, metrics))
    return runs


def parse_mmengine(path: Path, records: Iterable[dict]) -> Run:
    run = Run(path, 'mmengine')
    has_train = by_epoch = False
    for record in records:
        if 'lr' in record or 'loss' in record:  # only train records have them
            has_train = True
            by_epoch = by_epoch or 'epoch' in record
            # The step of a train record is the global iteration.
            if is_number(record.get('loss')) and is_number(record.get('step')):
                run.add_loss(record['step'], record['loss'])
        elif is_number(record.get('step')) or is_test_result(record):
            metrics = evaluation_metrics(record, 'mmengine')
            if metrics:
                run.evaluations.append(Evaluation(record.get('step'), metrics))
    if run.evaluations and all(e.step is None for e in run.evaluations):
        run.unit = 'test'
    elif run.evaluations:
        # The step of a val record is the epoch for epoch-based runs (mmdet
        # logs metrics by epoch) and the iteration for iter-based ones (mmseg
        # configs set log_metric_by_epoch=False).
        run.unit = ('epoch' if by_epoch else 'iter' if has_train else
                    default_unit(run.evaluations[0].metrics))
    return run


def read_runs(path: Path) -> list[Run]:
    """The runs in one log file, its format detected from its first record."""
    records = read_records(path)
    try:
        first = next(records, None)
        if first is None:
            return []
        fmt = detect_format(first)
        if fmt is None:
            warn(f'{path}: not an mmdet/mmseg json log, skipped')
            return []
        records = itertools.chain([first], records)
        runs = (parse_legacy(path, records) if fmt == 'legacy' else
                [parse_mmengine(path, records)])
    except OSError as error:
        warn(f'{path}: cannot read: {error.strerror or error}')
        return []
    if len(runs) > 1:
        for number, run in enumerate(runs, 1):
            run.number = number
    return runs


@dataclass
class Result:
    """A run's evaluations that report the selected metric."""
    run: Run
    metric: str
    evaluations: list[Evaluation]

    def value(self, evaluation: Evaluation) -> float:
        return evaluation.metrics[self.metric]

    @property
    def best(self) -> Evaluation:
        return max(self.evaluations, key=self.value)

    @property
    def last(self) -> Evaluation:
        return self.evaluations[-1]


def primary_metric(run: Run) -> str | None:
    """bbox_mAP / mIoU, or their tta/ form in a run that has only test-time-augmented results."""
    metric = TASK_PRIMARY_METRICS.get(run.task)
    if metric and not any(metric in e.metrics for e in run.evaluations):
        return TTA_PREFIX + metric
    return metric


def select_results(runs: list[Run], metric: str | None) -> list[Result]:
    """Results for the given metric, or for each run's primary metric."""
    results, lacking = [], []
    for run in runs:
        run_metric = metric or primary_metric(run)
        if not run.evaluations:
            warn(f'{run.label}: no evaluation records')
        elif run_metric is None:
            warn(f'{run.label}: no bbox_mAP or mIoU, choose one with --metric')
        else:
            evaluations = [
                e for e in run.evaluations if run_metric in e.metrics]
            if evaluations:
                results.append(Result(run, run_metric, evaluations))
            else:
                lacking.append(run)
    if lacking and not results:
        known = sorted({name for run in lacking for e in run.evaluations
                        for name in e.metrics if '.' not in name})
        raise UsageError(f'unknown metric {metric!r}; the logs have: '
                         f'{", ".join(known)}')
    for run in lacking:
        warn(f'{run.label}: no {metric} in its evaluations')
    return results


def format_best_lines(results: list[Result]) -> str:
    """"41.7 path" lines; a test-time-augmented result names its metric after the path."""
    return '\n'.join(f'{format_percent(r.value(r.best))} {r.run.label}'
                     + (f' {r.metric}' if r.metric.startswith(TTA_PREFIX) else '')
                     for r in results)


def markdown_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    rows = [rows[0], ['-' * width for width in widths], *rows[1:]]
    return '\n'.join(
        '| ' + ' | '.join(cell.ljust(w) for cell, w in zip(row, widths)) + ' |'
        for row in rows)


def format_tables(results: list[Result]) -> str:
    """One markdown table per set of columns (detection, segmentation, ...),
    each row taken from the evaluation where the selected metric peaked."""
    groups = defaultdict(list)
    for result in results:
        columns = TABLE_COLUMNS.get(result.run.task, ())
        columns += tuple(column for column in TTA_COLUMNS.get(result.run.task, ())
                         if any(column[1] in e.metrics for e in result.evaluations))
        if result.metric not in (key for _, key in columns):
            columns += ((result.metric, result.metric),)
        groups[columns, result.metric].append(result)
    tables = []
    for (columns, metric), group in groups.items():
        rows = [['log', 'format', *(title for title, _ in columns),
                 f'best {metric} at', f'last {metric}', 'evals']]
        for r in group:
            best = r.best
            rows.append([
                r.run.label, r.run.fmt,
                *(format_percent(best.metrics[key]) if key in best.metrics
                  else '-' for _, key in columns),
                'test' if best.step is None else f'{r.run.unit} {best.step}', format_percent(r.value(r.last)),
                str(len(r.evaluations))])
        tables.append(markdown_table(rows))
    return '\n\n'.join(tables)


def format_json(results: list[Result]) -> str:
    return json.dumps([{
        'log': r.run.label,
        'path': str(r.run.path),
        'format': r.run.fmt,
        'task': r.run.task,
        'metric': r.metric,
        'unit': r.run.unit,
        'best': r.value(r.best),
        'best_at': r.best.step,
        'last': r.value(r.last),
        'last_at': r.last.step,
        'evaluations': len(r.evaluations),
        'metrics_at_best': r.best.metrics,
    } for r in results], indent=2)


def plot_results(results: list[Result], out_path: Path) -> None:
    """Metric curves (one subplot per step unit) and training loss, side by
    side, one color per run."""
    import matplotlib
    matplotlib.use('Agg')  # headless
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter

    units = sorted({r.run.unit for r in results} - {'test'})  # a test run has no curve
    fig, axes = plt.subplots(1, len(units) + 1, squeeze=False,
                             figsize=(6.5 * (len(units) + 1), 5))
    colormap = plt.cm.tab10 if len(results) <= 10 else plt.cm.tab20
    colors = [colormap(i % colormap.N) for i in range(len(results))]
    for ax, unit in zip(axes[0], units):
        for r, color in zip(results, colors):
            if r.run.unit == unit:
                ax.plot([e.step for e in r.evaluations],
                        [r.value(e) for e in r.evaluations], marker='o',
                        markersize=3, color=color, label=r.run.short_name)
        metrics = ', '.join(
            sorted({r.metric for r in results if r.run.unit == unit}))
        ax.set(title=f'{metrics} per evaluation', ylabel=f'{metrics} (%)',
               xlabel=UNIT_NAMES[unit])
    loss_ax = axes[0][-1]
    for r, color in zip(results, colors):
        if r.run.loss_steps:
            loss_ax.plot(r.run.loss_steps, r.run.loss_values, linewidth=0.7,
                         color=color, label=r.run.short_name)
    # Log scale: losses start several times higher than where they settle.
    # Ticks at 0.2, 0.5, 1, 2, ... read better than 2x10^-1.
    loss_ax.set(title='training loss', xlabel='training iteration',
                ylabel='loss', yscale='log')
    loss_ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    loss_ax.yaxis.set_major_formatter('{x:g}')
    loss_ax.yaxis.set_minor_formatter(NullFormatter())
    for ax in axes[0]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize='small')
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)


def report(paths: list[Path], metric: str | None = None, table: bool = False, as_json: bool = False,
           plot: Path | None = None, verbose: bool = False, write=print) -> int:
    """Write the best results of the logs under ``paths`` (best lines, ``table`` or ``as_json``)
    with ``write``, and the curves to ``plot``; returns 1 when no log had any, else 0."""
    if plot and not plot.parent.is_dir():
        raise UsageError(f'no such directory for --plot: {plot.parent}')
    runs = [run for path in collect_log_files(paths, verbose)
            for run in read_runs(path)]
    runs.sort(key=lambda run: (str(run.path), run.number or 0))
    if verbose:
        for run in runs:
            unit = f' by {UNIT_NAMES[run.unit]}' if run.unit else ''
            warn(f'{run.label}: {FORMAT_NAMES[run.fmt]}; evaluations: '
                 f'{len(run.evaluations)}{unit}')
    results = select_results(
        runs, metric_name(metric) if metric else None)
    if not results:
        warn('no evaluation results found')
        return 1
    if table:
        write(format_tables(results))
    elif as_json:
        write(format_json(results))
    else:
        write(format_best_lines(results))
    if plot:
        try:
            plot_results(results, plot)
        except OSError as error:
            if plot.exists():
                plot.unlink()  # a failed step leaves no output file
            raise UsageError(f'cannot save plot: {error}') from None
        warn(f'saved plot to {plot}')
    return 0
