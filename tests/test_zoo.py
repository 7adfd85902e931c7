"""backbones/weights/zoo.py, the one table of published results and configs, a row per model of
the family records: every config file is in it, every config header agrees with it, every
model it lists is registered and builds the backbone its configs name, and the README shows it."""
import re

import pytest
import timm

from mm_efficient_backbones.backbones.models import registry
from mm_efficient_backbones.backbones.weights import zoo
from conftest import ROOT, load_script

# Files other engineers own or that are not the zoo's: the CPU demos and the deploy configs.
NOT_ZOO = ('demo', 'deploy')
CONFIG_FILES = sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / 'configs').rglob('*.py')
                      if path.relative_to(ROOT / 'configs').parts[0] not in NOT_ZOO)
ZOO_CONFIGS = [cfg.path for _, cfg in zoo.configs()]
# "# Published (source): 41.7 box AP / 38.6 mask AP (note)." in a config's leading comments.
PUBLISHED_LINE = re.compile(r'^# Published(?: \([^)]*\))?: (.*)$')
CLAIMED_METRIC = re.compile(r'(\d+\.\d+) (box AP|mask AP|mIoU)\b')  # published figures have a decimal


def header_claim(path: str) -> tuple:
    """({metric: value}, the line) of the config's one "Published" header line; nothing in
    parentheses counts (other widths, other epochs, the other method's result)."""
    header = []
    for line in (ROOT / path).read_text().splitlines():
        if not line.startswith('#'):
            break
        header.append(line)
    lines = [match.group(1) for line in header if (match := PUBLISHED_LINE.match(line))]
    assert len(lines) == 1, f'{path}: expected one "# Published...:" header line, found {len(lines)}'
    claim = re.sub(r'\([^)]*\)', '', lines[0])
    return {metric: value for value, metric in CLAIMED_METRIC.findall(claim)}, lines[0]


def require_config(path: str):
    if not (ROOT / path).is_file():
        pytest.skip(f'{path} is not on this branch yet (its row is data in backbones/weights/zoo.py)')


def require_model(name: str):
    if name not in timm.list_models(name):
        pytest.skip(f'model {name} is not registered on this branch yet (its row is data in backbones/weights/zoo.py)')


def test_every_config_file_is_in_the_table_once():
    assert len(ZOO_CONFIGS) == len(set(ZOO_CONFIGS)), 'a config appears twice in the table'
    assert CONFIG_FILES, 'no config found'
    missing = sorted(set(CONFIG_FILES) - set(ZOO_CONFIGS))
    assert not missing, f'configs missing from backbones/weights/zoo.py: {missing}'
    assert all(zoo.config(path)[1].path == path for path in CONFIG_FILES)
    assert zoo.config('configs/demo/recnext_m0_demo_coco.py') is None


@pytest.mark.parametrize('path', ZOO_CONFIGS)
def test_config_header_published_line_agrees_with_the_table(path):
    require_config(path)
    _, cfg = zoo.config(path)
    claimed, line = header_claim(path)
    assert claimed == cfg.published, f'{path}: header says {line!r}, the table {cfg.published_text()!r}'
    if not cfg.published:
        assert line.startswith('none'), f'{path}: say "none" where nothing is published: {line!r}'
    assert ('multi-scale' in line) == cfg.multi_scale, path
    # A figure from an earlier epoch than the last says which (tests/test_recipes.py checks the log).
    assert (f'at epoch {cfg.epoch} of ' in line) == bool(cfg.epoch), f'{path}: {line!r}, table epoch {cfg.epoch}'


def test_table_values_are_well_formed():
    names = [entry.name for entry in zoo.MODELS]
    assert len(names) == len(set(names))
    for entry in zoo.MODELS:
        assert entry.weights in zoo.WEIGHTS, entry.name
        for value in (entry.params, entry.macs):
            assert value is None or re.fullmatch(r'\d+(\.\d+)?', value), (entry.name, value)
        for cfg in entry.configs:
            assert set(cfg.published) <= set(zoo.METRICS), cfg.path
            assert all(re.fullmatch(r'\d+\.\d', v) for v in cfg.published.values()), cfg.path
            assert bool(cfg.published) == bool(cfg.source), f'{cfg.path}: a published figure names its source'
            assert not cfg.multi_scale or cfg.task == 'ade20k', cfg.path
            assert cfg.epoch is None or (cfg.published and cfg.task == 'coco'), cfg.path


def test_the_table_has_a_row_per_project_model_and_its_rows_name_project_models():
    assert [entry.name for entry in zoo.MODELS] == registry.model_names()
    unknown = sorted({row.name for row in zoo.ROWS} - set(registry.model_names()))
    assert not unknown, f'zoo rows of models no family declares: {unknown}'


@pytest.mark.parametrize('name', [entry.name for entry in zoo.MODELS])
def test_every_table_model_is_registered_with_its_weights(name):
    require_model(name)
    entry = zoo.model(name)
    tags = timm.list_pretrained(f'{name}.*')
    if entry.weights == 'release':
        assert tags and all(timm.models.get_pretrained_cfg(tag).url in registry.release_urls() for tag in tags)
    elif entry.weights == 'timm':
        assert tags, f'{name}: the table says timm has weights, timm lists none'
    else:
        assert not tags, f'{name}: the table says {entry.weights}, timm lists {tags}'


@pytest.mark.parametrize('path', ZOO_CONFIGS)
def test_config_builds_the_backbone_of_its_table_model(path):
    pytest.importorskip('mmdet')
    from mmengine.config import Config
    entry, _ = zoo.config(path)
    require_config(path)
    require_model(entry.name)
    target = registry.backbone_target(entry.name)
    backbone = Config.fromfile(str(ROOT / path)).model.backbone
    assert (backbone.type, backbone.arch) == (registry.family_of_model(entry.name).type, target.arch), path
    for option, value in target.options.items():  # ConvNeXt-1D's variant
        assert backbone.get(option, getattr(target.backbone_cls, f'default_{option}', None)) == value, path


def test_downstream_checkpoints_are_the_release_files():
    listed = {cfg.checkpoint for _, cfg in zoo.configs() if cfg.checkpoint}
    released = {url for url in registry.release_urls() if not url.endswith('_300e.pth')}
    assert listed == released
    for entry, cfg in zoo.configs():
        if cfg.checkpoint:
            assert cfg.checkpoint == registry.downstream_url(entry.name, cfg.task) and cfg.published, cfg.path


def test_rexnet_widths_without_imagenet_weights_say_so():
    for name in ('rexnet_090', 'rexnet_220'):
        entry = zoo.model(name)
        assert entry.weights == 'none' and 'no ImageNet weights' in entry.note
    assert zoo.config('configs/rexnet_220_coco_faster_rcnn.py')[1].published == {'box AP': '41.5'}
    assert zoo.config('configs/rexnet_090_coco.py')[1].published == {'box AP': '38.7', 'mask AP': '35.2'}


README = (ROOT / 'README.md').read_text()


def readme_row(name: str) -> list:
    rows = [line for line in README.splitlines() if line.startswith(f'| {name} |')]
    assert len(rows) == 1, f'README: {len(rows)} model-table rows for {name}'
    return [cell.strip() for cell in rows[0].strip('|').split('|')]


@pytest.mark.parametrize('name', [entry.name for entry in zoo.MODELS])
def test_readme_model_table_shows_the_table(name):
    """The README's model table is scripts/zoo_table.py's: every config of a model, with its result."""
    require_model(name)
    zoo_table = load_script('zoo_table')
    cells = readme_row(name)
    assert cells[5:7] == [zoo_table.imagenet_weights(name), zoo_table.configs_cell(name)], \
        f'README row of {name} is stale: rerun `python scripts/zoo_table.py`'
    for _, cfg in ((e, c) for e, c in zoo.configs() if e.name == name):
        assert f'`{cfg.path.split("/")[-1]}`' in cells[6]


def test_readme_lists_every_published_downstream_checkpoint_with_its_metric():
    for entry, cfg in zoo.configs():
        if not cfg.checkpoint:
            continue
        metric = 'box AP' if cfg.task == 'coco' else 'mIoU'
        row = (f'| [{entry.name}_{cfg.task}]({cfg.checkpoint}) | `{cfg.path}` | {cfg.published[metric]} {metric} | '
               f'`tools/dist_test.sh {cfg.path} {cfg.checkpoint} 8` |')
        assert row in README, row
