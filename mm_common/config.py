"""Loading a tool's config: the file, ``--cfg-options`` and the work dir, each failure one line."""
import argparse
import os.path as osp
import warnings
from typing import Optional, Sequence

from mm_efficient_backbones.backbones.errors import UserError, one_line

# Printed by every process when mmengine imports setuptools' pkg_resources; nothing a user can act on.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated as an API')


class ConfigError(UserError):
    """A config file or a ``--cfg-options`` entry that cannot be used."""


def load_config(path: str, cfg_options: Sequence[str] = (), work_dir: Optional[str] = None):
    """``path`` as an mmengine Config with ``cfg_options`` (``KEY=VALUE`` strings) merged in and
    ``cfg.work_dir`` set: ``work_dir``, else the config's own, else ``work_dirs/<config name>``."""
    from mmengine.config import Config, DictAction
    if not osp.isfile(path):
        raise ConfigError(f'config not found: {path}')
    try:
        cfg = Config.fromfile(path)
    except (SyntaxError, ImportError, FileNotFoundError, KeyError, TypeError, ValueError) as err:
        raise ConfigError(f'cannot load config {path}: {one_line(err)}') from None
    if cfg_options:
        options = argparse.Namespace()
        try:
            DictAction(option_strings=[], dest='options')(None, options, list(cfg_options))
            cfg.merge_from_dict(options.options)
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f'invalid config option: {one_line(err)}') from None
    cfg.work_dir = work_dir or cfg.get('work_dir') or osp.join(
        'work_dirs', osp.splitext(osp.basename(path))[0])
    return cfg
