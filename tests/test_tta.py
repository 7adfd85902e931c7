"""The ConvNeXt-1D ADE20K multi-scale protocol (the Oriented1D authors' mmseg 0.x --aug-test)
as the configs declare it, on the demo segmentor: its views, its merge against a plain
re-implementation of mmseg 0.x's aug_test, and tools/test.py --tta (and mmseg's own
tools/test.py --tta) end to end, with the metrics named apart."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, demo_cfg_options

CONVNEXT_ADE = 'configs/convnext1d_tiny_1d_ade20k.py'
SEG_DEMO = 'configs/demo/recnext_m0_demo_ade.py'
# The demo's stand-in for (2048, 512) (its images are 128 x 128), and how many it tests.
DEMO_TEST_SCALE = (96, 64)
IMAGES = 2


def demo_tta_config(demo_data):
    """The seg demo with the ConvNeXt-1D configs' test-time augmentation, scaled from (2048, 512)
    to the demo's test scale, and the same whole-image single-scale test at that scale."""
    from mmengine.config import Config
    convnext = Config.fromfile(str(ROOT / CONVNEXT_ADE), import_custom_modules=False)
    cfg = Config.fromfile(str(ROOT / SEG_DEMO))
    cfg.merge_from_dict(demo_cfg_options(demo_data, 'seg'))
    tta_pipeline = convnext.tta_pipeline
    aug = next(step for step in tta_pipeline if step.type == 'TestTimeAug')
    for resize in aug.transforms[0]:
        ratio = resize.scale[0] / 2048
        resize.scale = (int(DEMO_TEST_SCALE[0] * ratio), int(DEMO_TEST_SCALE[1] * ratio))
    # The demo's labels need no zero-label reduction (reduce_zero_label=False).
    aug.transforms[2] = [dict(type='LoadAnnotations')]
    cfg.tta_pipeline = tta_pipeline
    cfg.tta_model = convnext.tta_model
    cfg.model.test_cfg = convnext.model.test_cfg
    cfg.test_dataloader.dataset.pipeline = [
        dict(type='LoadImageFromFile'), dict(type='Resize', scale=DEMO_TEST_SCALE, keep_ratio=True),
        dict(type='LoadAnnotations'), dict(type='PackSegInputs')]
    cfg.test_dataloader.dataset.indices = IMAGES
    cfg.test_dataloader.num_workers = 0
    cfg.test_dataloader.persistent_workers = False
    return cfg


def test_convnext_configs_declare_the_authors_protocol():
    """Ratios 0.5-1.75 of (2048, 512) keep-ratio (not of the image), flip, whole mode, softmax mean."""
    from mmengine.config import Config
    cfg = Config.fromfile(str(ROOT / CONVNEXT_ADE), import_custom_modules=False)
    assert cfg.model.test_cfg == dict(mode='whole') and cfg.tta_model.type == 'SegTTAModel'
    [resizes, flips, *_] = next(step for step in cfg.tta_pipeline if step.type == 'TestTimeAug').transforms
    assert [tuple(r.scale) for r in resizes] == [(int(2048 * r), int(512 * r))
                                                 for r in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)]
    assert all(r.keep_ratio for r in resizes) and sorted(f.prob for f in flips) == [0.0, 1.0]


@pytest.fixture(scope='module')
def demo_segmentor(demo_data):
    """The demo config with the TTA protocol, and its segmentor with seeded random weights."""
    from mmengine.registry import init_default_scope
    from mm_efficient_backbones import segmentation  # noqa: F401
    from mmseg.registry import MODELS
    cfg = demo_tta_config(demo_data)
    init_default_scope('mmseg')
    torch.manual_seed(0)
    tta_model = MODELS.build(dict(cfg.tta_model, module=cfg.model))
    tta_model.eval()
    return cfg, tta_model


def aug_test_reference(segmentor, img_path: str, ratios, scale) -> torch.Tensor:
    """mmseg 0.x's ``--aug-test``, written out: every ratio of ``scale`` (keep-ratio, mmcv's
    bilinear rescale), flipped and not; normalise; whole-image logits resized to the image;
    softmax; flip back; the mean of the views' probabilities (C, H, W)."""
    import mmcv
    import torch.nn.functional as F
    image = mmcv.imread(img_path)
    preprocessor = segmentor.data_preprocessor
    total = 0
    for ratio in ratios:
        resized = mmcv.imrescale(image, (int(scale[0] * ratio), int(scale[1] * ratio)), interpolation='bilinear')
        for flip in (False, True):
            view = mmcv.imflip(resized, 'horizontal') if flip else resized
            tensor = torch.from_numpy(np.ascontiguousarray(view[..., ::-1])).permute(2, 0, 1).float()
            tensor = (tensor - preprocessor.mean) / preprocessor.std
            meta = dict(img_shape=view.shape[:2], ori_shape=image.shape[:2])
            with torch.no_grad():
                logits = segmentor.encode_decode(tensor[None], [meta])
            logits = F.interpolate(logits, size=image.shape[:2], mode='bilinear', align_corners=False)
            probabilities = logits.softmax(dim=1)[0]
            total = total + (probabilities.flip(-1) if flip else probabilities)
    return total / (2 * len(ratios))


def test_multi_scale_merge_is_mmseg_0x_aug_test(demo_segmentor):
    """SegTTAModel's prediction is the argmax of mmseg 0.x's averaged softmax, and it differs
    from the single-scale prediction."""
    from mmengine.dataset import pseudo_collate
    from mmseg.registry import DATASETS
    cfg, tta_model = demo_segmentor
    dataset = DATASETS.build(dict(cfg.test_dataloader.dataset, pipeline=cfg.tta_pipeline))
    single = DATASETS.build(cfg.test_dataloader.dataset)
    ratios = [r.scale[0] / DEMO_TEST_SCALE[0] for r in
              next(step for step in cfg.tta_pipeline if step.type == 'TestTimeAug').transforms[0]]
    assert ratios == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    differs = 0
    for index in range(IMAGES):
        item = dataset[index]
        assert len(item['inputs']) == 12  # 6 scales x (flip, no flip)
        with torch.no_grad():
            [merged] = tta_model.test_step(pseudo_collate([item]))
            [single_scale] = tta_model.module.test_step(pseudo_collate([single[index]]))
        expected = aug_test_reference(tta_model.module, item['data_samples'][0].img_path, ratios, DEMO_TEST_SCALE)
        prediction = merged.pred_sem_seg.data[0]
        assert prediction.shape == expected.shape[1:]
        assert torch.equal(prediction, expected.argmax(dim=0))
        differs += int((prediction != single_scale.pred_sem_seg.data[0]).sum())
    assert differs > 0, 'the multi-scale prediction is the single-scale one'


def run_test_tool(*args):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)


def printed_metrics(stdout: str) -> dict:
    """tools/test.py's last line: 'aAcc=12.3400 mIoU=...' -> {name: value}."""
    return {key: float(value) for key, value in re.findall(r'(\S+)=(\d+\.\d+)', stdout.strip().splitlines()[-1])}


def test_tools_test_tta_runs_the_declared_protocol_under_its_own_name(demo_segmentor, tmp_path, capsys):
    """tools/test.py and tools/test.py --tta on one checkpoint: mIoU and tta/mIoU, different;
    mmseg's own tools/test.py --tta gives the same tta figures; log-results names them."""
    cfg, tta_model = demo_segmentor
    config = tmp_path / 'demo_tta.py'
    cfg.dump(str(config))
    checkpoint = tmp_path / 'demo.pth'
    torch.save({'state_dict': tta_model.module.state_dict(), 'meta': {}}, checkpoint)
    work = tmp_path / 'work'
    single = run_test_tool('tools/test.py', str(config), str(checkpoint), '--work-dir', str(work))
    assert single.returncode == 0, single.stderr[-3000:]
    tta = run_test_tool('tools/test.py', str(config), str(checkpoint), '--work-dir', str(work), '--tta')
    assert tta.returncode == 0, tta.stderr[-3000:]
    single_metrics, tta_metrics = printed_metrics(single.stdout), printed_metrics(tta.stdout)
    assert set(single_metrics) == {'aAcc', 'mIoU', 'mAcc'}
    assert set(tta_metrics) == {'tta/aAcc', 'tta/mIoU', 'tta/mAcc'}
    assert tta_metrics['tta/mIoU'] != single_metrics['mIoU']

    # mmseg's own tools/test.py --tta runs the config's protocol the same way.
    import mmseg
    mmseg_test = Path(mmseg.__file__).parent / '.mim' / 'tools' / 'test.py'
    if not mmseg_test.is_file():
        pytest.skip(f"mmseg's tools/test.py is not installed at {mmseg_test}")
    own = run_test_tool(str(mmseg_test), str(config), str(checkpoint), '--work-dir', str(tmp_path / 'mmseg'), '--tta')
    assert own.returncode == 0, own.stderr[-3000:]
    mmseg_record = json.loads(next((tmp_path / 'mmseg').glob('*/*.json')).read_text())
    assert round(mmseg_record['mIoU'], 2) == round(tta_metrics['tta/mIoU'], 2)

    # log-results reads both test runs and names the multi-scale one.
    from mm_efficient_backbones.tools.log_results import main as log_results
    assert log_results([str(work)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert sum(line.endswith(' tta/mIoU') for line in lines) == 1
