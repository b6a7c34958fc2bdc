"""`train { }` and `search { }` settings, learning-rate schedules and data sources."""
from __future__ import annotations

from .base import FunctionEntry
from .images import CHANNELS as IMAGE_CHANNELS, size_problem
from .schema import Param

F = FunctionEntry


def delimiter_problem(delimiter) -> str | None:
    """Why `delimiter` cannot separate CSV fields, or None: one character, not a quote or line break."""
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        return "a single character"
    if delimiter in "\r\n\"":
        return "a single character other than a double quote or a line break"
    return None


def column_problem(name) -> str | None:
    """Why `name` cannot name a CSV column, or None."""
    return None if isinstance(name, str) and name.strip() else "a column name (not empty)"


SEED_MAX = 2**32 - 1  # numpy's and Optuna's samplers take seeds in [0, 2**32)

# Each train setting takes one value; its Param states the type.
TRAIN_SETTINGS: tuple[Param, ...] = (
    Param("data", "any", None, doc="data source: sklearn.iris, logic.xor, synthetic(n=...), csv(\"f.csv\", target=\"y\"), npz(\"f.npz\")"),
    Param("epochs", "int", 10, min=1, doc="passes over the training data"),
    Param("steps", "int", None, min=1, doc="stop after this many optimizer steps in all"),
    Param("batch_size", "int|enum", 32, min=1, choices=("full",),
          doc="1 = stochastic GD, full = batch GD, otherwise mini-batch"),
    Param("validation", "float", 0.0, min=0.0, max=0.9, doc="fraction held out for validation (stratified)"),
    Param("folds", "int", None, min=2, doc="k-fold cross-validation: k runs, each validated on its own 1/k of the data"),
    Param("seed", "int", 0, min=0, max=SEED_MAX, doc="seed for initialization, shuffling and splits"),
    Param("shuffle", "bool", True, doc="reshuffle the training data every epoch"),
    Param("standardize", "bool", True, doc="standardize tabular features (fitted on the training split)"),
    Param("schedule", "any", None, doc="learning-rate schedule: step(every, gamma), cosine, exponential(gamma), reduce_on_plateau(factor, patience)"),
    Param("warmup", "int", 0, min=0, doc="epochs of linear learning-rate warm-up"),
    Param("early_stopping", "int", None, min=1, doc="stop after this many epochs without improvement of `monitor`"),
    Param("monitor", "name", None, doc="the value early stopping and best.pt follow (default val_loss, or loss)"),
    Param("clip_grad_norm", "float", None, min=0.0, min_exclusive=True, doc="clip the global gradient norm"),
    Param("clip_grad_value", "float", None, min=0.0, min_exclusive=True, doc="clip each gradient element"),
    Param("class_weights", "any", None, doc="balanced, or a list with one weight per class"),
    Param("init", "str", None, validate=lambda path: None if path.strip() else "a path, not empty",
          doc="start from another run's weights: a run folder (its best.pt) or a checkpoint, relative to the "
              "spec's folder; layers are matched by name and shape"),
    Param("target", "enum", None, choices=("input",),
          doc="input: train the output to reproduce the model's input (an autoencoder); default: the data's labels"),
    Param("augment", "any", None,
          doc="augmentations of the training batches' inputs, e.g. [random_crop(padding=1), rotate(10), gaussian_noise(0.05)]"),
)

SEARCH_SETTINGS: tuple[Param, ...] = (
    Param("trials", "int", 20, min=1, doc="number of trials"),
    Param("sampler", "enum", "tpe", choices=("random", "tpe"), doc="how trials are chosen"),
    Param("objective", "any", None, doc="minimize|maximize METRIC, e.g. maximize val_auc (default: minimize val_loss)"),
    Param("timeout", "float", None, min=0.0, min_exclusive=True, doc="stop starting trials after this many seconds"),
    Param("pruner", "enum", "none", choices=("none", "median", "successive_halving"),
          doc="stop unpromising trials early from their per-epoch validation metric"),
    Param("seed", "int", 0, min=0, max=SEED_MAX, doc="seed of the sampler"),
)

# `adversarial { }`: how two `network`s of one spec train against each other (a GAN).
GAN_OBJECTIVES = ("non_saturating", "minimax", "least_squares")
ADVERSARIAL_SETTINGS: tuple[Param, ...] = (
    Param("generator", "name", None, doc="the network that maps noise to a sample (required)"),
    Param("discriminator", "name", None, doc="the network that scores a sample: one real/fake score (required)"),
    Param("objective", "enum", "non_saturating", choices=GAN_OBJECTIVES,
          doc="non_saturating: G maximises log D(G(z)); minimax: G minimises log(1 - D(G(z))); "
              "least_squares: LSGAN's squared errors on the raw scores"),
    Param("label_smoothing", "float", 0.0, min=0.0, max=0.5,
          doc="one-sided: the discriminator's target for real samples is 1 - label_smoothing"),
    Param("d_steps", "int", 1, min=1, max=100, doc="discriminator steps per generator step (each batch)"),
    Param("grid", "int", 64, min=1, max=256, doc="samples in each epoch's grid image (samples/epoch_NNN.png)"),
)

SCHEDULES: tuple[FunctionEntry, ...] = (
    F("step", (Param("every", "int", 10, min=1), Param("gamma", "float", 0.1, min=0.0, min_exclusive=True)),
      doc="multiply the learning rate by gamma every `every` epochs"),
    F("cosine", (Param("min_lr", "float", 0.0, min=0.0),), doc="cosine annealing over the run's epochs"),
    F("exponential", (Param("gamma", "float", 0.95, min=0.0, min_exclusive=True),),
      doc="multiply the learning rate by gamma every epoch"),
    F("reduce_on_plateau", (Param("factor", "float", 0.1, min=0.0, min_exclusive=True, max=1.0),
                            Param("patience", "int", 5, min=0), Param("min_lr", "float", 0.0, min=0.0)),
      doc="multiply the learning rate by factor when `monitor` stops improving"),
)

SKLEARN_SETS = ("iris", "digits", "wine", "breast_cancer", "diabetes")
LOGIC_TABLES = ("and", "or", "xor", "nand", "nor")

DATA_SOURCES: tuple[FunctionEntry, ...] = (
    *(F(f"sklearn.{n}", doc=f"scikit-learn's bundled {n} data set") for n in SKLEARN_SETS),
    *(F(f"logic.{n}", doc=f"the truth table of logical {n.upper()} (4 rows)") for n in LOGIC_TABLES),
    F("synthetic", (Param("n", "int", 1024, min=1), Param("seed", "int", 0, min=0, max=SEED_MAX)),
      doc="random data matched to the inputs and the task, with a learnable signal"),
    F("csv", (Param("path", "str"), Param("target", "str", None),
              Param("delimiter", "str", ",", validate=delimiter_problem)),
      doc="a CSV file with a header; `target` names the label column (default: the last)"),
    F("npz", (Param("path", "str"),), doc="a NumPy .npz with arrays x and y (or one array per input name, and y)"),
    F("images", (Param("path", "str"), Param("size", "ints", min=1, validate=size_problem, doc="[H, W] of every image"),
                 Param("color", "enum", "gray", choices=tuple(IMAGE_CHANNELS), doc="gray: input [1, H, W]; rgb: [3, H, W]"),
                 Param("workers", "int", None, min=0, max=64, doc="decoding processes (default: up to 2, one per CPU core; 0: none)")),
      doc="a folder of PNG/JPEG images, one subfolder per class (its name is the label), decoded from disk in batches"),
    F("shards", (Param("path", "str", doc="a folder of .npz files (or one)"),
                 Param("workers", "int", None, min=0, max=64, doc="reading processes (default: up to 2, one per CPU core; 0: none)")),
      doc="data bigger than memory: .npz shards, each with x (or the input's name) and y, read from disk in batches"),
    F("parquet", (Param("path", "str", doc="a .parquet file or a folder of them"),
                  Param("target", "str", None, validate=column_problem, doc="the label column (default: the last)"),
                  Param("workers", "int", None, min=0, max=64, doc="reading processes (default: up to 2, one per CPU core; 0: none)")),
      doc="data bigger than memory: Parquet row groups read from disk in batches; every column but `target` is a feature"),
    F("text", (Param("path", "str"), Param("text", "str", validate=column_problem),
               Param("target", "str", None, validate=column_problem),
               Param("vocab", "int", None, min=2, doc="token ids 0..vocab-1 (default: the Embedding's vocab)"),
               Param("max_len", "int", None, min=1, doc="tokens kept per text (default: the input's length, or 256)"),
               Param("lowercase", "bool", True), Param("delimiter", "str", ",", validate=delimiter_problem)),
      doc="a CSV file of raw text: `text` names the text column, `target` the label column (default: the last); "
          "a vocabulary fitted on the training rows turns words into token ids"),
)

TEXT_MAX_LEN = 256  # tokens kept per text for an `int[?]` input when max_len is not given


def text_source_problem(args, inputs, vocabs) -> tuple[str, str, str] | None:
    """Why the text(...) source `args` cannot feed a model, as (code, message, help), or None.
    `inputs`: the model's (name, shape, dtype); `vocabs`: input name -> the vocab of the Embedding
    reading it. The checker reports it for the spec's source; loading refuses it for `--data`."""
    if len(inputs) != 1 or inputs[0][2] != "int" or len(inputs[0][1]) != 1:
        got = ", ".join(f"'{n}' {'int' if d == 'int' else ''}[{', '.join('?' if s is None else str(s) for s in shape)}]"
                        for n, shape, d in inputs)
        return ("E129", f"text(...) gives one sequence of token ids per row to one `int[?]` input; the model's "
                f"input{'s are' if len(inputs) != 1 else ' is'} {got or 'missing'}",
                "declare `input tokens: int[?]` read by an Embedding(vocab=..., dim=...), or use csv(...) for numbers")
    name, (length,), _ = inputs[0]
    embedding = vocabs.get(name)
    vocab = args.get("vocab") or embedding
    if vocab is None:
        return ("E130", f"text(...) needs `vocab`: no Embedding reads input '{name}'",
                'give the number of token ids, e.g. text("f.csv", text="review", vocab=20000)')
    if embedding is not None and vocab > embedding:
        return ("E130", f"text(...) vocab={vocab} is larger than the vocab={embedding} of the Embedding reading "
                f"input '{name}'", f"token ids 0..vocab-1 index the Embedding: use vocab={embedding} or less, "
                "or raise the Embedding's vocab")
    max_len = args.get("max_len")
    if length is not None and max_len is not None and max_len > length:
        return ("E131", f"text(...) max_len={max_len} is longer than input '{name}' int[{length}]",
                f"use max_len={length} or less, or declare `input {name}: int[?]`")
    return None
