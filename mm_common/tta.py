"""``tools/test.py --tta``: the test-time augmentation a config declares, run as mmdet's and
mmseg's own ``tools/test.py --tta`` run it, its metrics named apart from the single-scale ones.

A config declares its protocol the mmdet 3.x / mmseg 1.x way: ``tta_pipeline`` (the views, e.g.
a ``TestTimeAug`` of scales and flips) and ``tta_model`` (how the views' predictions merge, e.g.
mmseg's ``SegTTAModel``, which averages the softmax probabilities as mmseg 0.x's aug_test did).
"""
from mm_efficient_backbones.backbones.errors import UserError

# The prefix of every test metric under --tta: 'tta/mIoU' beside the single-scale 'mIoU'.
TTA_METRIC_PREFIX = 'tta'


def require_tta(cfg) -> None:
    """Fail in one line unless ``cfg`` declares its test-time augmentation."""
    missing = [key for key in ('tta_model', 'tta_pipeline') if not cfg.get(key)]
    if missing:
        raise UserError(f'--tta: the config declares no {" / ".join(missing)} (the test-time augmentation '
                        'mmdet 3.x / mmseg 1.x configs declare); test without --tta')


def use_tta(cfg) -> None:
    """Turn ``cfg`` into its test-time-augmented form, in place: the test set goes through
    ``cfg.tta_pipeline``, the model is ``cfg.tta_model`` wrapping ``cfg.model``, and each test
    metric gets the :data:`TTA_METRIC_PREFIX`."""
    require_tta(cfg)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.model = dict(cfg.tta_model, module=cfg.model)
    evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, (list, tuple)) else [cfg.test_evaluator]
    for evaluator in evaluators:
        evaluator['prefix'] = '/'.join(p for p in (TTA_METRIC_PREFIX, evaluator.get('prefix')) if p)
