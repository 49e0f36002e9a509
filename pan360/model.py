"""``from pan360.model import SoundLocalizer``: the sound-attention network (see :mod:`pan360.nn.model`)."""

from pan360.nn.model import LocalizerOutput, ModelConfig, SoundLocalizer

__all__ = ["LocalizerOutput", "ModelConfig", "SoundLocalizer"]
