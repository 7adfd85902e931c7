"""Regenerate the facts of the published runs (one JSON file per run, named after our config)
from the authors' public logs and configs. Standard library only: neither mmcv 1.x nor
mmengine is needed, the legacy configs are plain Python and are merged here as mmcv 1.x did.

    python tests/data/published_recipes/extract.py \\
        --suous-logs RecNeXt/ RepNeXt/ \\
        --oriented1d Oriented1D/ \\
        --swin-det Swin-Transformer-Object-Detection/ \\
        --beit-seg unilm/beit/semantic_segmentation/

* ``--suous-logs``: folders searched for suous/RecNeXt's and suous/RepNeXt's published json
  logs (``{detection,segmentation}/logs/<model>_{coco,ade20k}.json``); the first line of each
  holds the config that ran and the machine it ran on.
* ``--oriented1d``: a checkout of princeton-vl/Oriented1D (configs, train/eval scripts, README).
  Its configs name bases that the repository does not ship; its README says to copy its files
  into Swin-Transformer-Object-Detection (commit 6a979e2) and BEiT's semantic_segmentation
  (microsoft/unilm f8f3df8), whose ``configs/_base_`` are read from ``--swin-det`` / ``--beit-seg``.

Every fact carries its source (repository, file, line or log field). A run file's
``deviations`` section is written by hand (what our config does differently and why): it is
read back and kept as it is when the file is regenerated.
"""
import argparse
import ast
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SWIN_DET = 'SwinTransformer/Swin-Transformer-Object-Detection@6a979e2'
BEIT_SEG = 'microsoft/unilm@f8f3df8 beit/semantic_segmentation'
ORIENTED1D = 'princeton-vl/Oriented1D'
# mmseg 0.x EncoderDecoder.aug_test: softmax of each view (flipped back, resized to the
# image), summed, divided by the number of views, then argmax.
AUG_TEST_MERGE = 'mean of softmax probabilities'
AUG_TEST_MERGE_SOURCE = 'mmsegmentation 0.x EncoderDecoder.aug_test / inference (softmax per view, averaged)'
# torch's default weight decay where a config sets none.
TORCH_WEIGHT_DECAY = {'AdamW': 0.01, 'SGD': 0.0}
# Pipeline steps that carry no augmentation or test-scale fact (normalisation is its own fact).
NEUTRAL_STEPS = {'LoadImageFromFile', 'LoadAnnotations', 'Normalize', 'Pad', 'DefaultFormatBundle',
                 'Collect', 'ImageToTensor'}


class ExtractError(Exception):
    """An input that cannot be read as the script expects."""


# ---- legacy (mmcv 1.x) configs --------------------------------------------------------------
MISSING = object()


def lookup(node, keys):
    """``node[k0][k1]...`` through dicts and lists, or MISSING."""
    for key in keys:
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, (list, tuple)) and isinstance(key, int) and key < len(node):
            node = node[key]
        else:
            return MISSING
    return node


class ConfigFile:
    """One legacy config file or config text: its variables, and where each is written."""

    def __init__(self, text: str, label: str, path: Path = None, line_label=None):
        self.label = label
        self.path = path
        self.line_label = line_label or (lambda line: f'{label}:{line}')
        self.tree = ast.parse(text)
        namespace = {}
        exec(compile(self.tree, str(path or label), 'exec'), {}, namespace)  # noqa: S102 - public configs
        self.variables = {k: v for k, v in namespace.items() if not k.startswith('__')}

    def has(self, keys) -> bool:
        return lookup(self.variables, keys) is not MISSING

    def line_of(self, keys) -> int:
        """The line that writes ``keys`` (the deepest one the source spells out)."""
        node = self._assignment(keys[0])
        line = node.lineno if node is not None else None
        for key in keys[1:]:
            child = None
            if isinstance(node, ast.Name):  # e.g. pipeline=train_pipeline: follow the variable
                node = self._assignment(node.id) or node
            if isinstance(node, ast.Call):
                child = next((kw.value for kw in node.keywords if kw.arg == key), None)
            elif isinstance(node, ast.Dict):
                child = next((v for k, v in zip(node.keys, node.values)
                              if isinstance(k, ast.Constant) and k.value == key), None)
            elif isinstance(node, (ast.List, ast.Tuple)) and isinstance(key, int) and key < len(node.elts):
                child = node.elts[key]
            if child is None:
                break
            node, line = child, child.lineno
        return line

    def _assignment(self, name: str):
        """The value of the last top-level ``name = ...``."""
        value = None
        for statement in self.tree.body:
            if isinstance(statement, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == name for t in statement.targets):
                value = statement.value
        return value

    def where(self, keys) -> str:
        return self.line_label(self.line_of(keys))


def _without_delete(value):
    if isinstance(value, dict):
        return {k: _without_delete(v) for k, v in value.items() if k != '_delete_'}
    return value


def merge(base: dict, child: dict) -> dict:
    """mmcv 1.x's merge: dicts merge key by key unless the child says ``_delete_=True``;
    everything else (lists too) is replaced."""
    merged = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and not value.get('_delete_'):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = _without_delete(value)
    return merged


class LegacyConfig:
    """A merged legacy config and the chain of files it came from (bases first)."""

    def __init__(self, chain):
        self.chain = chain
        self.cfg = {}
        for config_file in chain:
            own = {k: v for k, v in config_file.variables.items() if k != '_base_'}
            self.cfg = merge(self.cfg, own)

    def get(self, keys, default=None):
        value = lookup(self.cfg, keys)
        return default if value is MISSING else value

    def where(self, keys, default_note: str = '') -> str:
        """The file and line that set ``keys`` last, or ``default_note`` where none sets it."""
        for config_file in reversed(self.chain):
            if config_file.has(keys):
                return config_file.where(keys)
            if config_file.has(keys[:1]) and isinstance(config_file.variables[keys[0]], dict) \
                    and config_file.variables[keys[0]].get('_delete_'):
                break  # replaced wholesale here: the bases no longer count
        if not default_note:
            raise ExtractError(f'{".".join(map(str, keys))} is set nowhere in {self.chain[-1].label}')
        return f'{self.chain[-1].label}: {".".join(map(str, keys))} not set ({default_note})'


def load_chain(path: Path, label_of, fallback_roots) -> list:
    """``path`` and its ``_base_`` files, bases first; a base missing beside the config is
    looked up at the same place under ``configs/`` of each fallback checkout."""
    config_file = ConfigFile(path.read_text(), label_of(path), path)
    bases = config_file.variables.get('_base_', [])
    chain = []
    for base in [bases] if isinstance(bases, str) else bases:
        base_path = (path.parent / base).resolve()
        if not base_path.is_file():
            inside = _relative_to_configs(base_path)
            candidates = [root / 'configs' / inside for root in fallback_roots]
            base_path = next((c for c in candidates if c.is_file()), None)
            if base_path is None:
                raise ExtractError(f'{path}: base {base} not found beside it nor in '
                                   f'{", ".join(str(c) for c in candidates) or "any fallback checkout"}')
        chain += load_chain(base_path, label_of, fallback_roots)
    return chain + [config_file]


def _relative_to_configs(path: Path) -> Path:
    parts = path.parts
    if 'configs' not in parts:
        raise ExtractError(f'{path}: not under a configs/ folder')
    return Path(*parts[len(parts) - parts[::-1].index('configs'):])


# ---- canonical forms shared with tests/test_recipes.py ---------------------------------------
def canonical_scale(scale, keep_ratio: bool = True) -> list:
    """A keep-ratio scale bounds the long and the short side: (long, short) in either order."""
    return sorted(scale, reverse=True) if keep_ratio else list(scale)


def legacy_train_steps(pipeline, task: str) -> list:
    """The augmentations of an mmdet 2.x / mmseg 0.x train pipeline as [op, params] pairs."""
    steps = []
    for step in pipeline:
        kind = step['type']
        if kind in NEUTRAL_STEPS:
            continue
        if kind == 'Resize':
            keep_ratio = step.get('keep_ratio', True)
            scales = step['img_scale'] if isinstance(step['img_scale'], list) else [step['img_scale']]
            if step.get('ratio_range'):
                steps.append(['resize', dict(scale=canonical_scale(scales[0], keep_ratio),
                                             ratio_range=list(step['ratio_range']), keep_ratio=keep_ratio)])
            else:
                if len(scales) > 1 and step.get('multiscale_mode', 'range') != 'value':
                    raise ExtractError(f'Resize multiscale_mode {step.get("multiscale_mode")} is not translated')
                steps.append(['resize', dict(scales=sorted(canonical_scale(s, keep_ratio) for s in scales),
                                             keep_ratio=keep_ratio)])
        elif kind == 'RandomCrop':
            if task == 'coco':
                steps.append(['crop', dict(size=list(step['crop_size']), type=step.get('crop_type', 'absolute'),
                                           allow_negative_crop=step.get('allow_negative_crop', False))])
            else:
                steps.append(['crop', dict(size=list(step['crop_size']),
                                           cat_max_ratio=step.get('cat_max_ratio', 1.0))])
        elif kind == 'RandomFlip':
            steps.append(['flip', step.get('flip_ratio', step.get('prob'))])
        elif kind == 'PhotoMetricDistortion':
            steps.append(['photometric_distortion', {k: v for k, v in step.items() if k != 'type'}])
        elif kind == 'AutoAugment':
            steps.append(['choice', [legacy_train_steps(policy, task) for policy in step['policies']]])
        else:
            steps.append([kind, {k: v for k, v in step.items() if k != 'type'}])
    return steps


def legacy_test_protocol(pipeline, mode) -> dict:
    """Single-scale test of an mmdet 2.x / mmseg 0.x test pipeline (MultiScaleFlipAug)."""
    aug = next(step for step in pipeline if step['type'] == 'MultiScaleFlipAug')
    if aug.get('img_ratios') and len(aug['img_ratios']) > 1:
        raise ExtractError('a multi-scale default test pipeline is not translated')
    transforms = {step['type']: step for step in aug['transforms']}
    resize = transforms.get('Resize') or transforms.get('AlignResize')
    keep_ratio = resize.get('keep_ratio', True)
    return dict(scale=canonical_scale(aug['img_scale'], keep_ratio), keep_ratio=keep_ratio,
                resize_to_multiple=transforms['AlignResize'].get('size_divisor', 32)
                if 'AlignResize' in transforms else None,
                pad_to_multiple=transforms['Pad'].get('size_divisor') if 'Pad' in transforms else None,
                flip=bool(aug.get('flip', False)), mode=mode)


def legacy_test_mode(cfg: LegacyConfig, task: str):
    if task == 'coco':
        return None
    mode = cfg.get(('model', 'test_cfg', 'mode'), 'whole')
    if mode == 'slide':
        return dict(slide=dict(crop=list(cfg.get(('model', 'test_cfg', 'crop_size'))),
                               stride=list(cfg.get(('model', 'test_cfg', 'stride')))))
    return mode


# ---- the facts ------------------------------------------------------------------------------
def fact(value, source: str) -> dict:
    return {'value': _plain(value), 'source': source}


def sources(**where) -> str:
    """``'lr, weight_decay: file:12; betas: ...'``: the parts that one place sets, named together."""
    places = {}
    for name, place in where.items():
        places.setdefault(place, []).append(name)
    return '; '.join(f'{", ".join(names)}: {place}' for place, names in places.items())


def _plain(value):
    """JSON-able: tuples become lists, ranges their length."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def recipe_facts(cfg: LegacyConfig, task: str, gpus: int, gpus_source: str, tta=None) -> dict:
    """Every fact the recipe test checks, from a merged legacy config."""
    train_data = cfg.get(('data', 'train'))
    train_keys = ('data', 'train', 'dataset') if train_data.get('type') == 'RepeatDataset' else ('data', 'train')
    train_pipeline = cfg.get(train_keys + ('pipeline',))
    test_pipeline = cfg.get(('data', 'test', 'pipeline'))
    samples_per_gpu = cfg.get(('data', 'samples_per_gpu'))
    optimizer = cfg.get(('optimizer',))
    betas_note = 'torch AdamW default' if optimizer['type'] == 'AdamW' else 'none'
    constructor = optimizer.get('constructor')
    lr_config = cfg.get(('lr_config',))
    runner = cfg.get(('runner',))
    by_epoch = 'EpochBased' in runner['type']
    length_key = 'max_epochs' if by_epoch else 'max_iters'
    policy = lr_config['policy']
    if policy == 'step':
        lr_policy = dict(policy='step', steps=lr_config['step'], gamma=lr_config.get('gamma', 0.1))
    elif policy == 'poly':
        lr_policy = dict(policy='poly', power=lr_config.get('power', 1.0), min_lr=lr_config.get('min_lr', 0.0))
    else:
        raise ExtractError(f'lr policy {policy} is not translated')
    warmup = None
    if lr_config.get('warmup'):
        warmup = dict(type=lr_config['warmup'], iters=lr_config['warmup_iters'],
                      ratio=lr_config.get('warmup_ratio', 0.1))
        if lr_config.get('warmup_by_epoch'):
            raise ExtractError('an epoch-based warm-up is not translated')
    fp16 = cfg.get(('fp16',))
    use_fp16 = cfg.get(('optimizer_config', 'use_fp16'), False)
    normalize = next(step for step in train_pipeline if step['type'] == 'Normalize')
    normalize_index = [step['type'] for step in train_pipeline].index('Normalize')
    evaluation_metric = cfg.get(('evaluation', 'metric'))
    mode = legacy_test_mode(cfg, task)
    facts = {
        'gpus': fact(gpus, gpus_source),
        'samples_per_gpu': fact(samples_per_gpu, cfg.where(('data', 'samples_per_gpu'))),
        'total_batch': fact(gpus * samples_per_gpu, 'gpus x samples_per_gpu'),
        'optimizer': fact(dict(type=optimizer['type'], lr=optimizer['lr'],
                               betas=list(optimizer.get('betas', (0.9, 0.999))),
                               weight_decay=optimizer.get('weight_decay', TORCH_WEIGHT_DECAY[optimizer['type']])),
                          sources(type=cfg.where(('optimizer', 'type')), lr=cfg.where(('optimizer', 'lr')),
                                  betas=cfg.where(('optimizer', 'betas'), betas_note),
                                  weight_decay=cfg.where(('optimizer', 'weight_decay'), 'torch default'))),
        'layer_decay': fact(
            dict(constructor=constructor, **{k: optimizer['paramwise_cfg'][k]
                                             for k in ('decay_rate', 'decay_type', 'num_layers')})
            if constructor else None,
            cfg.where(('optimizer', 'constructor'), 'no layer-wise decay')),
        'schedule': fact(dict(unit='epoch' if by_epoch else 'iter', length=runner[length_key]),
                         cfg.where(('runner', length_key))),
        'lr_policy': fact(lr_policy, cfg.where(('lr_config', 'policy'))
                          + (f'; steps: {cfg.where(("lr_config", "step"))}' if policy == 'step' else '')),
        'warmup': fact(warmup, cfg.where(('lr_config', 'warmup_iters'), 'no warm-up') if warmup
                       else cfg.where(('lr_config', 'warmup'), 'no warm-up')),
        'precision': fact('fp16' if fp16 or use_fp16 else 'fp32',
                          sources(fp16=cfg.where(('fp16',), 'no fp16 dict'),
                                  use_fp16=cfg.where(('optimizer_config', 'use_fp16'), 'off'))),
        'train_augmentation': fact(legacy_train_steps(train_pipeline, task),
                                   cfg.where(train_keys + ('pipeline',))),
        'test': fact(legacy_test_protocol(test_pipeline, mode),
                     cfg.where(('data', 'test', 'pipeline'))
                     + (f'; mode: {cfg.where(("model", "test_cfg", "mode"), "whole")}' if task == 'ade20k' else '')),
        'tta': tta or fact(None, 'no multi-scale / flip test in the published protocol'),
        'normalization': fact(dict(mean=normalize['mean'], std=normalize['std'], rgb=normalize['to_rgb']),
                              cfg.where(train_keys + ('pipeline', normalize_index))),
        'drop_path': fact(cfg.get(('model', 'backbone', 'drop_path_rate'), 0.0),
                          cfg.where(('model', 'backbone', 'drop_path_rate'),
                                    "0.0: the authors' backbone has no drop path")),
        'eval_metrics': fact([evaluation_metric] if isinstance(evaluation_metric, str) else evaluation_metric,
                             cfg.where(('evaluation', 'metric'))),
    }
    return facts


# ---- suous/RecNeXt and suous/RepNeXt: the published json logs -------------------------------
SUOUS_LOG = re.compile(r'^(?P<family>recnext|repnext)_(?P<arch>[am]\d)_(?P<task>coco|ade20k)\.json$')
SUOUS_REPOS = {'recnext': 'suous/RecNeXt', 'repnext': 'suous/RepNeXt'}


def suous_runs(folders) -> dict:
    """{our config stem: run} for every published log found under ``folders``."""
    runs = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob('*.json')):
            match = SUOUS_LOG.match(path.name)
            if not match:
                if re.match(r'^(recnext|repnext)_', path.name) and path.parent.name == 'logs':
                    print(f'skipped {path}: not the log the README publishes', file=sys.stderr)
                continue
            stem = path.stem
            if stem in runs:
                continue  # the same log in two folders (e.g. a copy beside the checkout)
            runs[stem] = suous_run(path, **match.groupdict())
    return runs


def suous_run(path: Path, family: str, arch: str, task: str) -> dict:
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    folder = 'detection' if task == 'coco' else 'segmentation'
    label = f'{SUOUS_REPOS[family]} {folder}/logs/{path.name}'
    config_file = ConfigFile(header['config'], label,
                             line_label=lambda line: f'{label} line 1, "config" line {line}')
    cfg = LegacyConfig([config_file])
    gpu_line = next(line for line in header['env_info'].splitlines() if line.startswith('GPU '))
    gpus = len(cfg.get(('gpu_ids',)))
    facts = recipe_facts(cfg, task, gpus, f'{config_file.where(("gpu_ids",))} (gpu_ids); '
                                          f'"env_info": {gpu_line}')
    return dict(
        run=f'{SUOUS_REPOS[family]} {folder}/logs/{path.name}',
        config=f'configs/{path.stem}.py',
        facts=facts,
        evaluations=dict(source=f'{label}: the "mode": "val" records',
                         **suous_evaluations(lines[1:], task)))


def suous_evaluations(lines, task: str) -> dict:
    """Every validation result of a log, as logged (fractions)."""
    rows = []
    last_iter = 0
    for line in lines:
        record = json.loads(line)
        if record.get('mode') == 'train':
            last_iter = record.get('iter', last_iter)
        elif record.get('mode') == 'val' and 'loss' not in record:
            if task == 'coco':
                rows.append([record['epoch'], record['bbox_mAP'], record['segm_mAP']])
            else:
                rows.append([last_iter, record['mIoU']])
    columns = ['epoch', 'bbox_mAP', 'segm_mAP'] if task == 'coco' else ['iter', 'mIoU']
    return dict(columns=columns, rows=rows)


# ---- princeton-vl/Oriented1D: configs with their bases merged --------------------------------
ORIENTED1D_CONFIG = re.compile(r'^(cascade_mask_rcnn|upernet)_convnext_(?P<size>tiny|base)_(?P<variant>1d|1dpp|2d|2dpp)_')


def oriented1d_runs(checkout: Path, swin_det: Path, beit_seg: Path) -> dict:
    runs = {}
    det_gpus = _script_default(checkout / 'scripts' / 'train_object_detection.sh', 'NGPUS')
    seg_gpus = _readme_gpus(checkout / 'README.md')
    tta = _aug_test(checkout / 'scripts' / 'eval_semantic_segmentation.sh', beit_seg / 'tools' / 'test.py')
    for task, folder, fallback in (('coco', 'object_detection', swin_det), ('ade20k', 'semantic_segmentation', beit_seg)):
        for path in sorted((checkout / folder / 'configs' / 'convnext').glob('*.py')):
            match = ORIENTED1D_CONFIG.match(path.name)
            if not match:
                continue
            chain = load_chain(path, lambda p: _oriented1d_label(p, checkout, swin_det, beit_seg), [fallback])
            gpus, gpus_source = det_gpus if task == 'coco' else seg_gpus
            stem = f'convnext1d_{match["size"]}_{match["variant"]}_{task}'
            runs[stem] = dict(
                run=f'{ORIENTED1D} {folder}/configs/convnext/{path.name}',
                config=f'configs/{stem}.py',
                facts=recipe_facts(LegacyConfig(chain), task, gpus, gpus_source,
                                   tta=tta if task == 'ade20k' else None))
    return runs


def _oriented1d_label(path: Path, checkout: Path, swin_det: Path, beit_seg: Path) -> str:
    path = path.resolve()
    for root, name in ((checkout.resolve(), ORIENTED1D), (swin_det.resolve(), SWIN_DET),
                       (beit_seg.resolve(), BEIT_SEG)):
        if root in path.parents:
            return f'{name} {path.relative_to(root).as_posix()}'
    return str(path)


def _line_matching(path: Path, pattern: str):
    for number, line in enumerate(path.read_text().splitlines(), 1):
        match = re.search(pattern, line)
        if match:
            return number, match
    raise ExtractError(f'{path}: no line matches {pattern!r}')


def _script_default(script: Path, variable: str):
    number, match = _line_matching(script, r'\$\{' + variable + r':=(\d+)\}')
    return int(match.group(1)), f'{ORIENTED1D} scripts/{script.name}:{number} ({variable} default)'


def _readme_gpus(readme: Path):
    number, match = _line_matching(readme, r'[Bb]y default, we used (\d+) GPUS')
    return int(match.group(1)), f'{ORIENTED1D} README.md:{number} ("{match.group(0)} for our training")'


def _aug_test(eval_script: Path, beit_test: Path) -> dict:
    """``--aug-test`` of the eval script: the ratios and flip that BEiT's tools/test.py sets."""
    script_line, _ = _line_matching(eval_script, r'--aug-test')
    ratios_line, _ = _line_matching(beit_test, r'img_ratios = \[')
    text = beit_test.read_text()
    ratios = json.loads('[' + re.search(r'img_ratios = \[([^\]]*)\]', text).group(1).replace('\n', ' ') + ']')
    flip_line, _ = _line_matching(beit_test, r'pipeline\[1\]\.flip = True')
    return fact(dict(ratios=ratios, flip=True, merge=AUG_TEST_MERGE),
                f'{ORIENTED1D} scripts/{eval_script.name}:{script_line} (--aug-test); '
                f'{BEIT_SEG} tools/test.py:{ratios_line} (img_ratios of the test scale), :{flip_line} (flip); '
                f'{AUG_TEST_MERGE_SOURCE}')


# ---- writing, keeping the hand-written notes ----------------------------------------------------
def write_runs(runs: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for stem, run in sorted(runs.items()):
        path = out / f'{stem}.json'
        kept = json.loads(path.read_text()).get('deviations', {}) if path.is_file() else {}
        run = dict(run, deviations=kept)
        path.write_text(json.dumps(run, indent=1) + '\n')
        print(f'wrote {path}')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--suous-logs', nargs='*', type=Path, default=[],
                        help='folders holding suous/RecNeXt and suous/RepNeXt json logs')
    parser.add_argument('--oriented1d', type=Path, help='princeton-vl/Oriented1D checkout')
    parser.add_argument('--swin-det', type=Path, help='Swin-Transformer-Object-Detection at 6a979e2')
    parser.add_argument('--beit-seg', type=Path, help='unilm/beit/semantic_segmentation at f8f3df8')
    parser.add_argument('--out', type=Path, default=HERE, help='where the run files go (default: here)')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        runs = suous_runs(args.suous_logs)
        if args.oriented1d:
            if not (args.swin_det and args.beit_seg):
                raise ExtractError('--oriented1d needs --swin-det and --beit-seg for the bases it names')
            runs.update(oriented1d_runs(args.oriented1d, args.swin_det, args.beit_seg))
        if not runs:
            raise ExtractError('no published run found: pass --suous-logs and/or --oriented1d')
        write_runs(runs, args.out)
    except (ExtractError, OSError, KeyError, StopIteration, json.JSONDecodeError) as err:
        print(f'error: {type(err).__name__}: {err}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
