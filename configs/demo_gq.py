"""GQ 4-bit fine-tuning of the `configs/demo.py` float model (set `quant.init_from` to its workdir).

    python train.py --config configs/demo_gq.py --workdir runs/demo/gq4 \
        --config.quant.init_from=runs/demo/float
"""

from configs import demo


def get_config():
    config = demo.get_config()
    config.quant.method = "gq"
    config.quant.rules = ((r".*kernel", 4, "channel"),)
    config.quant.alpha.schedule = "exponential"
    config.quant.alpha.start = 5.0
    config.quant.alpha.end = 500.0
    config.quant.alpha.end_step = 500
    config.quant.centroid_learning_rate = 1e-3
    config.optim.learning_rate = 5e-4
    config.optim.warmup_steps = 20
    config.num_train_steps = 800
    config.eval_every_steps = 400
    config.checkpoint_every_steps = 200
    return config
