"""Keras and PyTorch spellings of arguments and settings that nnspec spells its own way.

The checker still refuses them (one spelling per concept keeps specs readable), but names the
nnspec spelling in the hint, and checks the call as if it had been written that way, so that one
mistake gives one error and the shape checking goes on."""
from __future__ import annotations

import re

FOREIGN_SPELLINGS: dict[str, str] = {
    "kernel_size": "kernel",       # Keras Conv2D, torch.nn.Conv2d
    "pool_size": "size",           # Keras MaxPooling2D
    "strides": "stride",           # Keras
    "learning_rate": "lr",         # Keras optimizers
    "out_features": "units",       # torch.nn.Linear
    "out_channels": "filters",     # torch.nn.Conv2d
    "p": "rate",                   # torch.nn.Dropout
    "hidden_size": "units",        # torch.nn.LSTM
    "num_layers": "layers",        # torch.nn.LSTM
    "num_heads": "heads",          # Keras MultiHeadAttention
    "nhead": "heads",              # torch.nn.TransformerEncoderLayer
    "dim_feedforward": "ff",       # torch.nn.TransformerEncoderLayer
    "num_embeddings": "vocab",     # torch.nn.Embedding
    "input_dim": "vocab",          # Keras Embedding
    "embedding_dim": "dim",        # torch.nn.Embedding
    "output_dim": "dim",           # Keras Embedding
    "use_bias": "bias",            # Keras
    "epsilon": "eps",              # Keras BatchNormalization
    "scale_factor": "scale",       # torch.nn.Upsample
    "validation_split": "validation",  # Keras fit()
    "batch": "batch_size",
}

_DID_YOU_MEAN = re.compile(r"did you mean '(.+)'\?")


def intended(name: str, known, suggestion: str | None) -> str | None:
    """The known name that `name` stands for: its Keras/PyTorch counterpart, else the one `suggest`
    found (its hint text), else None."""
    target = FOREIGN_SPELLINGS.get(name)
    if target in known:
        return target
    match = _DID_YOU_MEAN.fullmatch(suggestion or "")
    return match.group(1) if match and match.group(1) in known else None


def hint(name: str, target: str, example: str) -> str:
    """The help of an unknown argument or setting that stands for `target`."""
    if FOREIGN_SPELLINGS.get(name) == target:
        return f"nnspec spells `{name}` (Keras/PyTorch) as `{target}`: write {example}"
    return f"did you mean '{target}'? write {example}"
