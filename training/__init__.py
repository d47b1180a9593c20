"""The pieces of `train.py` and `eval.py`: config checks, input pipeline, train state,
checkpoints, metrics, evaluation and pictures. One concept per module."""
