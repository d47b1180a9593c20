"""The tiny training config the tests train with (configs/test_tiny.py on a given corpus)."""

import pathlib


def tiny_config(corpus: pathlib.Path, **overrides):
    """configs/test_tiny.py reading `corpus`, with dotted-field overrides ("quant.method": "gq")."""
    from configs import test_tiny

    config = test_tiny.get_config()
    config.data.path = str(corpus)
    for dotted, value in overrides.items():
        section, _, field = dotted.rpartition(".")
        target = config
        for key in filter(None, section.split(".")):
            target = target[key]
        target[field] = value
    return config
