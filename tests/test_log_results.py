"""Tests for tools/log_results.py on published legacy logs, mmengine fixtures
and generated broken or large logs."""
import inspect
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from mm_efficient_backbones.mm_common.logs import format_percent, read_records, read_runs
from mm_efficient_backbones.tools.log_results import main

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = (Path(__file__).resolve().parents[2]
             / 'shared/data/published_logs/recnext')
FIXTURES = Path(__file__).resolve().parent / 'fixtures' / 'logs'
MMDET_WORK_DIR = FIXTURES / 'mask-rcnn_recnext_m3_fpn_1x_coco'
MMDET_NEWEST = MMDET_WORK_DIR / '20240302_093000' / 'vis_data' / 'scalars.json'
MMDET_OLDER = (MMDET_WORK_DIR / '20240301_101500' / 'vis_data'
               / '20240301_101500.json')
MMSEG_WORK_DIR = FIXTURES / 'upernet_recnext_m3_512x512_ade20k'
MMSEG_LOG = MMSEG_WORK_DIR / '20240305_080000' / 'vis_data' / 'scalars.json'

needs_published = pytest.mark.skipif(
    not PUBLISHED.is_dir(), reason=f'published logs not found at {PUBLISHED}')

# Best bbox_mAP / mIoU x 100, as the logs themselves say.
PUBLISHED_BEST = {
    'detection/recnext_a3_coco.json': '42.1',
    'detection/recnext_a4_coco.json': '43.5',
    'detection/recnext_a5_coco.json': '44.4',
    'detection/recnext_m3_coco.json': '41.7',
    'detection/recnext_m4_coco.json': '43.5',
    'detection/recnext_m5_coco.json': '44.6',
    'segmentation/recnext_a3_ade20k.json': '41.9',
    'segmentation/recnext_a4_ade20k.json': '43.0',
    'segmentation/recnext_a5_ade20k.json': '46.5',
    'segmentation/recnext_m3_ade20k.json': '41.0',
    'segmentation/recnext_m4_ade20k.json': '43.6',
    'segmentation/recnext_m5_ade20k.json': '46.0',
}

LEGACY_HEADER = {
    'env_info': 'sys.platform: linux', 'seed': 0,
    'config': "runner = dict(type='EpochBasedRunner', max_epochs=12)"}


def cli(capsys, *args):
    code = main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def table_cells(table: str, row_name: str) -> list[str]:
    row = next(line for line in table.splitlines() if row_name in line)
    return [cell.strip() for cell in row.strip('|').split('|')]


def legacy_train(epoch, iteration, loss=1.0):
    # Shaped like the mmdet 2.x Mask R-CNN train records (~260 bytes).
    return {'mode': 'train', 'epoch': epoch, 'iter': iteration, 'lr': 0.0002,
            'memory': 5515, 'data_time': 0.01047, 'loss_rpn_cls': 0.02154,
            'loss_rpn_bbox': 0.03811, 'loss_cls': 0.21733, 'acc': 92.45117,
            'loss_bbox': 0.27012, 'loss_mask': 0.25101, 'loss': loss,
            'time': 0.52318}


def legacy_val(epoch, bbox_map):
    # "iter" of a val record is the val loader length, as in the real logs.
    return {'mode': 'val', 'epoch': epoch, 'iter': 625, 'lr': 0.0002,
            'bbox_mAP': bbox_map, 'bbox_mAP_50': bbox_map + 0.2,
            'bbox_mAP_copypaste': f'{bbox_map} 0.6 0.4 0.2 0.4 0.5'}


def write_lines(path: Path, records, tail: str = '') -> Path:
    path.write_text(''.join(json.dumps(r) + '\n' for r in records) + tail)
    return path


def write_legacy_log(path: Path, bbox_maps) -> Path:
    records = [LEGACY_HEADER]
    for epoch, bbox_map in enumerate(bbox_maps, 1):
        records += [legacy_train(epoch, 50), legacy_val(epoch, bbox_map)]
    return write_lines(path, records)


# Published legacy logs (mmdet 2.x / mmseg 0.x)

@needs_published
def test_published_best_values_like_the_jq_script(capsys):
    code, out, err = cli(capsys, PUBLISHED)
    assert code == 0 and err == ''
    lines = out.splitlines()
    best = {}
    for line in lines:
        value, path = line.split(' ')
        best[Path(path).relative_to(PUBLISHED).as_posix()] = value
    assert best == PUBLISHED_BEST
    assert lines == sorted(lines, key=lambda line: line.split(' ')[1])


@needs_published
def test_published_table_rows(capsys):
    code, out, _ = cli(capsys, PUBLISHED / 'detection', '--table')
    assert code == 0
    m3 = table_cells(out, 'recnext_m3_coco.json')
    assert m3[1:] == ['legacy', '41.7', '63.4', '45.4', '38.6', '60.5',
                      '41.4', 'epoch 12', '41.7', '12']
    m4 = table_cells(out, 'recnext_m4_coco.json')
    assert m4[1:] == ['legacy', '43.5', '64.9', '47.7', '39.7', '62.1',
                      '42.4', 'epoch 10', '43.2', '12']


@needs_published
def test_published_segmentation_steps_are_training_iterations(capsys):
    # The val records say "iter": 250 (the val loader length); the real
    # position is the training iteration logged just before them.
    [run] = read_runs(PUBLISHED / 'segmentation/recnext_m3_ade20k.json')
    assert run.fmt == 'legacy' and run.unit == 'iter'
    assert [e.step for e in run.evaluations] == list(range(8000, 80001, 8000))
    code, out, _ = cli(capsys, PUBLISHED / 'segmentation', '--table')
    assert table_cells(out, 'recnext_m4_ade20k.json')[1:] == [
        'legacy', '43.6', '80.7', '54.9', 'iter 80000', '43.6', '10']


@needs_published
def test_published_detection_loss_uses_global_iterations():
    [run] = read_runs(PUBLISHED / 'detection/recnext_m3_coco.json')
    steps = list(run.loss_steps)
    assert steps == sorted(steps)
    assert steps[-1] > 11 * 7000  # 12 epochs of about 7330 iterations


# mmengine logs (mmdet 3.x / mmseg 1.x), from the fixtures

def test_mmengine_detection_run_in_percent_by_epoch():
    [run] = read_runs(MMDET_NEWEST)
    assert (run.fmt, run.unit, run.task) == ('mmengine', 'epoch', 'detection')
    assert [e.step for e in run.evaluations] == [1, 2, 3]
    bbox_maps = [e.metrics['bbox_mAP'] for e in run.evaluations]
    assert bbox_maps == [22.7, 29.15, 28.84]
    assert list(run.loss_steps) == list(range(50, 451, 50))


def test_logs_written_by_our_demo_training(capsys):
    # Real scalars.json files from `make demo` (mmdet 3.x Mask R-CNN, mmseg 1.x FPN).
    demo = FIXTURES / 'demo'
    code, out, _ = cli(capsys, demo / 'coco', demo / 'ade', '--table')
    assert code == 0
    coco = table_cells(out, 'coco/20261122_174300/vis_data/scalars.json')
    assert coco[1:] == ['mmengine', '79.5', '100.0', '95.3', '83.2', '100.0', '100.0', 'epoch 6', '79.5', '2']
    ade = table_cells(out, 'ade/20261122_174745/vis_data/scalars.json')
    assert ade[1:] == ['mmengine', '92.2', '98.8', '96.0', 'iter 200', '92.2', '2']


def test_mmengine_work_dir_uses_the_newest_run(capsys):
    code, out, err = cli(capsys, MMDET_WORK_DIR)
    assert code == 0
    assert out == f'29.2 {MMDET_NEWEST}\n'  # 29.15 rounded half-up
    assert '2 mmengine runs, using the newest: 20240302_093000' in err


def test_mmengine_older_run_given_explicitly(capsys):
    assert cli(capsys, MMDET_OLDER)[1] == f'20.1 {MMDET_OLDER}\n'


def test_mmengine_segmentation_run_keeps_percentages(capsys):
    [run] = read_runs(MMSEG_LOG)
    assert (run.unit, run.task) == ('iter', 'segmentation')
    assert [e.step for e in run.evaluations] == [200, 400, 600]
    code, out, _ = cli(capsys, MMSEG_WORK_DIR, '--table')
    assert table_cells(out, 'scalars.json')[1:] == [
        'mmengine', '36.0', '79.8', '46.1', 'iter 400', '35.5', '3']


@pytest.mark.parametrize('metric', ['segm_mAP', 'coco/segm_mAP'])
def test_metric_in_legacy_or_mmengine_spelling(capsys, metric):
    out = cli(capsys, MMDET_NEWEST, '--metric', metric)[1]
    assert out == f'28.0 {MMDET_NEWEST}\n'


def test_other_metrics(capsys, tmp_path):
    out = cli(capsys, MMSEG_LOG, '--metric', 'aAcc')[1]
    assert out == f'79.8 {MMSEG_LOG}\n'
    legacy = write_legacy_log(tmp_path / 'run.log.json', [0.3, 0.35])
    out = cli(capsys, legacy, '--metric', 'bbox_mAP_50')[1]
    assert out == f'55.0 {legacy}\n'


def test_json_output(capsys):
    code, out, _ = cli(capsys, MMDET_WORK_DIR, MMSEG_WORK_DIR, '--json')
    det, seg = json.loads(out)
    assert det['format'] == seg['format'] == 'mmengine'
    assert (det['metric'], det['best'], det['best_at'], det['unit']) == (
        'bbox_mAP', 29.15, 2, 'epoch')
    assert (det['last'], det['evaluations']) == (28.84, 3)
    assert det['metrics_at_best']['segm_mAP_75'] == 29.18
    assert (seg['metric'], seg['best'], seg['best_at'], seg['unit']) == (
        'mIoU', 35.95, 400, 'iter')


def test_verbose_names_the_format(capsys):
    _, out, err = cli(capsys, MMSEG_LOG, '--verbose')
    assert out == f'36.0 {MMSEG_LOG}\n'
    assert 'mmengine json scalars' in err
    assert 'evaluations: 3 by iteration' in err


# Rounding

def test_rounding_is_half_up_on_the_percent_value():
    # Binary floats sit just below these decimals: printf would round down.
    assert f'{0.4165 * 100:.1f}' == '41.6' and 0.417 * 100 < 41.7
    assert format_percent(0.4165 * 100) == '41.7'
    assert format_percent(0.417 * 100) == '41.7'
    assert format_percent(29.15) == '29.2'
    assert format_percent(41.74) == '41.7'
    assert format_percent(46.0) == '46.0'


# Robustness

def test_empty_file_is_skipped_with_a_warning(capsys, tmp_path):
    empty = tmp_path / 'empty.log.json'
    empty.write_text('')
    code, out, err = cli(capsys, empty)
    assert code == 1 and out == ''
    assert f'{empty}: empty file' in err


def test_truncated_last_line_is_skipped_with_its_line_number(capsys, tmp_path):
    log = write_legacy_log(tmp_path / 'run.log.json', [0.30, 0.35])
    with open(log, 'a') as file:
        file.write('{"mode": "val", "epoch": 3, "iter": 625, "bbox_m')
    code, out, err = cli(capsys, log)
    assert code == 0 and out == f'35.0 {log}\n'
    assert f'{log}:6:' in err


def test_non_json_line_is_skipped_with_its_line_number(capsys, tmp_path):
    log = tmp_path / 'run.log.json'
    write_lines(log, [LEGACY_HEADER, legacy_train(1, 50)],
                tail='Traceback (most recent call last):\n'
                + json.dumps(legacy_val(1, 0.25)) + '\n')
    code, out, err = cli(capsys, log)
    assert code == 0 and out == f'25.0 {log}\n'
    assert f'{log}:3:' in err and err.count('\n') == 1


def test_log_without_evaluations(capsys, tmp_path):
    log = write_lines(tmp_path / 'crashed.log.json', [
        LEGACY_HEADER, legacy_train(1, 50), legacy_train(1, 100)])
    code, out, err = cli(capsys, log)
    assert code == 1 and out == ''
    assert f'{log}: no evaluation records' in err
    # One log with results is enough for success.
    code, out, err = cli(capsys, log, MMSEG_LOG)
    assert code == 0 and out == f'36.0 {MMSEG_LOG}\n'
    assert f'{log}: no evaluation records' in err


def test_appended_runs_are_reported_separately(capsys, tmp_path):
    log = write_lines(tmp_path / 'twice.log.json', [
        LEGACY_HEADER, legacy_train(1, 50), legacy_val(1, 0.30),
        LEGACY_HEADER, legacy_train(1, 50), legacy_val(1, 0.35),
        legacy_train(2, 50), legacy_val(2, 0.36)])
    code, out, _ = cli(capsys, log)
    assert out == f'30.0 {log}#run1\n36.0 {log}#run2\n'
    assert [len(run.evaluations) for run in read_runs(log)] == [1, 2]


def test_mixed_formats_in_one_call(capsys, tmp_path):
    legacy = write_legacy_log(tmp_path / 'legacy.log.json', [0.30, 0.41, 0.40])
    code, out, _ = cli(capsys, legacy, MMDET_WORK_DIR, MMSEG_LOG, '--table')
    assert code == 0
    assert table_cells(out, 'legacy.log.json')[1:3] == ['legacy', '41.0']
    assert table_cells(out, '20240302_093000')[1:3] == ['mmengine', '29.2']
    assert table_cells(out, '20240305_080000')[1:3] == ['mmengine', '36.0']
    # Detection and segmentation get their own tables.
    assert out.count('| log ') == 2


def test_folder_skips_json_files_that_are_not_logs(capsys, tmp_path):
    write_legacy_log(tmp_path / '20220101_120000.log.json', [0.2, 0.3])
    annotations = tmp_path / 'instances_val2017.json'
    annotations.write_text('{"images": [], "annotations": []}')
    code, out, err = cli(capsys, tmp_path)
    assert code == 0 and err == ''
    assert out == f'30.0 {tmp_path / "20220101_120000.log.json"}\n'


def test_large_log_is_parsed_correctly(tmp_path):
    epochs, lines_per_epoch = 12, 33_000
    log = write_large_legacy_log(tmp_path / 'large.log.json', epochs,
                                 lines_per_epoch)
    assert log.stat().st_size > 95 * 2**20
    [run] = read_runs(log)
    best = max(run.evaluations, key=lambda e: e.metrics['bbox_mAP'])
    assert (best.metrics['bbox_mAP'], best.step) == (43.5, 10)
    assert run.evaluations[-1].metrics['bbox_mAP'] == 43.2
    assert len(run.loss_steps) == epochs * lines_per_epoch
    assert run.loss_steps[-1] == epochs * lines_per_epoch * 50


def test_parsing_streams_line_by_line(tmp_path):
    assert inspect.isgeneratorfunction(read_records)
    log = write_large_legacy_log(tmp_path / 'epoch.log.json', 2, 16_000)
    tracemalloc.start()
    try:
        [run] = read_runs(log)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(run.evaluations) == 2
    # Only the loss curve is kept: 16 bytes per train line of ~260 bytes.
    assert peak < log.stat().st_size / 5


def write_large_legacy_log(path: Path, epochs: int,
                           lines_per_epoch: int) -> Path:
    """A legacy log of epochs x lines_per_epoch train records, with one
    evaluation per epoch peaking at epoch 10 (43.5) and ending at 43.2."""
    bbox_maps = {10: 0.435, 11: 0.433, 12: 0.432}
    epoch_lines = ''.join(
        json.dumps(legacy_train('EPOCH', 50 * (i + 1), 1.5)) + '\n'
        for i in range(lines_per_epoch))
    with open(path, 'w') as file:
        file.write(json.dumps(LEGACY_HEADER) + '\n')
        for epoch in range(1, epochs + 1):
            file.write(epoch_lines.replace('"EPOCH"', str(epoch)))
            val = legacy_val(epoch, bbox_maps.get(epoch, 0.3 + 0.01 * epoch))
            file.write(json.dumps(val) + '\n')
    return path


# Bad input

def test_missing_path_is_one_clear_line(capsys, tmp_path):
    missing = tmp_path / 'nope.json'
    code, out, err = cli(capsys, MMSEG_LOG, missing)
    assert code == 2 and out == ''
    assert err == ('log-results: error: no such file or directory: '
                   f'{missing}\n')


def test_unknown_metric_is_one_clear_line(capsys):
    code, out, err = cli(capsys, MMSEG_LOG, '--metric', 'bbox_mAP')
    assert code == 2 and out == ''
    assert err.count('\n') == 1
    assert "unknown metric 'bbox_mAP'; the logs have: aAcc, mAcc, mIoU" in err


def test_missing_plot_folder_is_one_clear_line(capsys, tmp_path):
    png = tmp_path / 'no' / 'plot.png'
    code, _, err = cli(capsys, MMSEG_LOG, '--plot', png)
    assert code == 2 and err.count('\n') == 1 and 'no such directory' in err


# Plot and entry points

def test_plot_is_written(capsys, tmp_path):
    legacy = write_legacy_log(tmp_path / 'legacy.log.json', [0.30, 0.41, 0.40])
    png = tmp_path / 'curves.png'
    code, out, _ = cli(capsys, legacy, MMDET_WORK_DIR, MMSEG_LOG,
                       '--plot', png)
    assert code == 0 and len(out.splitlines()) == 3
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


@pytest.mark.parametrize('command', [
    [sys.executable, 'tools/log_results.py'],
    [sys.executable, '-m', 'mm_efficient_backbones.tools.log_results'],
])
def test_runs_as_script_and_module(command, tmp_path):
    ok = subprocess.run(command + [str(MMSEG_LOG)], cwd=REPO,
                        capture_output=True, text=True)
    assert (ok.returncode, ok.stdout) == (0, f'36.0 {MMSEG_LOG}\n')
    bad = subprocess.run(command + [str(tmp_path / 'missing')], cwd=REPO,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count('\n') == 1
    assert 'Traceback' not in bad.stderr


def test_console_script_entry_point_returns_the_exit_code():
    pyproject = (REPO / 'pyproject.toml').read_text()
    assert 'log-results = "mm_efficient_backbones.tools.log_results:main"' in pyproject
    assert main([str(MMSEG_LOG)]) == 0


def test_test_runs_single_scale_and_tta_are_named_apart(capsys, tmp_path):
    # What tools/test.py (and tools/test.py --tta) leave in a work dir: one record per run.
    single = tmp_path / 'work' / '20261202_101010' / '20261202_101010.json'
    tta = tmp_path / 'work' / '20261202_111111' / '20261202_111111.json'
    for path, prefix, miou in ((single, '', 45.21), (tta, 'tta/', 47.38)):
        path.parent.mkdir(parents=True)
        write_lines(path, [{f'{prefix}aAcc': 81.0, f'{prefix}mIoU': miou, f'{prefix}mAcc': 56.0,
                            'data_time': 0.01, 'time': 0.52}])
    [run] = read_runs(tta)
    assert (run.fmt, run.unit, run.task) == ('mmengine', 'test', 'segmentation')
    assert run.evaluations[0].metrics['tta/mIoU'] == 47.38
    code, out, _ = cli(capsys, tmp_path / 'work')
    assert code == 0
    assert out == f'45.2 {single}\n47.4 {tta} tta/mIoU\n'
    out = cli(capsys, tmp_path / 'work', '--table')[1]
    assert 'mIoU tta' in out and table_cells(out, str(tta))[-3:] == ['test', '47.4', '1']
    out = cli(capsys, tmp_path / 'work', '--metric', 'tta/mIoU')[1]
    assert out == f'47.4 {tta} tta/mIoU\n'
