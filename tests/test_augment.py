"""`augment [...]`: kornia's own transforms, seeded, on training batches only, resumed exactly."""
import kornia.augmentation as K
import pytest
import torch

from nnspec.backends.torch_model import build_model
from nnspec.pipeline import check_text
from nnspec.train import augment as A
from nnspec.train import checkpoint as ckpt_io
from nnspec.train.data import Data, Split
from nnspec.train.losses import build_loss
from nnspec.train.loop import FitConfig, Task, evaluate, fit
from nnspec.train.optim import Schedule, build_optimizer
from nnspec.train.run import train_spec

torch.set_num_threads(1)

AUGMENTATIONS = (("random_crop", {"padding": 1, "p": 1.0}), ("rotate", {"degrees": 10.0, "p": 1.0}),
                 ("translate", {"fraction": 0.2, "p": 1.0}), ("flip_horizontal", {"p": 0.5}),
                 ("flip_vertical", {"p": 0.5}), ("gaussian_noise", {"std": 0.05, "p": 1.0}))


def kornia_reference():
    """The same transforms, written with kornia by hand."""
    return [K.RandomCrop((8, 8), padding=1, p=1.0), K.RandomRotation(degrees=10.0, p=1.0),
            K.RandomAffine(degrees=0.0, translate=(0.2, 0.2), p=1.0), K.RandomHorizontalFlip(p=0.5),
            K.RandomVerticalFlip(p=0.5), K.RandomGaussianNoise(mean=0.0, std=0.05, p=1.0)]


def test_each_batch_is_what_kornia_gives_from_the_same_seed():
    x = [torch.rand(16, 1, 8, 8), torch.rand(16, 1, 8, 8)]
    augmenter = A.Augmenter(AUGMENTATIONS, [(1, 8, 8)], seed=3)
    ours = [augmenter([b])[0] for b in x]
    torch.manual_seed(3 + A.SEED_OFFSET)  # kornia draws from the global generator: seeded as the Augmenter's
    reference = kornia_reference()
    for batch, got in zip(x, ours):
        for module in reference:
            batch = module(batch)
        torch.testing.assert_close(got, batch, rtol=0, atol=0)
    assert not torch.equal(ours[0], x[0])


def test_augmenting_neither_uses_nor_moves_the_global_generator():
    x = torch.rand(8, 1, 8, 8)
    torch.manual_seed(0)
    first = A.Augmenter(AUGMENTATIONS, [(1, 8, 8)], seed=1)([x])[0]
    after = torch.rand(3)
    torch.manual_seed(0)
    torch.rand(100)  # another draw before: the augmentation stream is its own
    again = A.Augmenter(AUGMENTATIONS, [(1, 8, 8)], seed=1)([x])[0]
    torch.manual_seed(0)
    assert torch.equal(first, again) and torch.equal(after, torch.rand(3))


def test_noise_on_vectors_and_sequences_keeps_their_shape_and_adds_the_std_asked_for():
    augmenter = A.Augmenter((("gaussian_noise", {"std": 0.5, "p": 1.0}),), [(4000,), (50, 40)], seed=0)
    vec, seq = augmenter([torch.zeros(10, 4000), torch.zeros(10, 50, 40)])
    assert vec.shape == (10, 4000) and seq.shape == (10, 50, 40)
    for noise in (vec, seq):
        assert abs(float(noise.std()) - 0.5) < 0.01 and abs(float(noise.mean())) < 0.01


class Counting(A.Augmenter):
    """An Augmenter that counts the batches it changes."""

    calls = 0

    def __call__(self, inputs):
        Counting.calls += 1
        return super().__call__(inputs)


def test_only_training_batches_are_augmented():
    torch.manual_seed(0)
    model_spec = check_text(SPEC.format(augment="", epochs=1, name="M")).checked
    model = build_model(model_spec)
    x, y = torch.rand(40, 1, 8, 8), torch.randint(0, 10, (40,))
    data = Data(Split([x[:30]], y[:30]), Split([x[30:]], y[30:]), "test")
    loss = build_loss(model_spec)
    optimizer = build_optimizer(*model_spec.optimizer, model, None)
    augmenter = Counting(AUGMENTATIONS, [(1, 8, 8)], seed=0)
    cfg = FitConfig(epochs=2, batch_size=8, augment=augmenter)
    task = Task("multiclass", (("accuracy", {}),))
    progress = fit(model, loss, optimizer, Schedule(optimizer, None, 0, 2, False), data, cfg, task,
                   torch.Generator().manual_seed(0))
    assert Counting.calls == progress.steps == 2 * 4  # 30 rows in batches of 8, two epochs
    # validation scored the validation rows as they are: evaluate (no augmenter) gives the same
    again = evaluate(model, data.val, loss, task, prefix="val_")
    assert again["val_loss"] == pytest.approx(progress.history[-1]["val_loss"], rel=1e-6)
    assert Counting.calls == 8


SPEC = """model {name} {{
    input image: [1, 8, 8]
    layers {{
        Conv2D(4, kernel=3, padding=same) -> relu
        Flatten()
        Dropout(0.2)
        Dense(10) -> softmax
    }}
    loss categorical_crossentropy
    optimizer Adam(lr=0.01)
    metrics [accuracy]
    train {{ data sklearn.digits; {augment} epochs {epochs}; batch_size 128; validation 0.8; seed 5 }}
}}
"""
AUGMENT = "augment [random_crop(padding=1), rotate(10), flip_horizontal, gaussian_noise(0.05)];"


@pytest.mark.slow
def test_resume_continues_the_same_augmentation_stream(tmp_path):
    spec = check_text(SPEC.format(augment=AUGMENT, epochs=4, name="Aug"))
    assert spec.ok, spec.diagnostics
    whole = train_spec(spec, out_dir=tmp_path / "whole")
    train_spec(spec, out_dir=tmp_path / "halves", epochs=2)
    halves = train_spec(spec, out_dir=tmp_path / "halves", resume=True)
    a = ckpt_io.load(whole.out_dir / "last.pt")
    b = ckpt_io.load(halves.out_dir / "last.pt")
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert torch.equal(a["rng"]["augment"], b["rng"]["augment"])
    assert [r["loss"] for r in whole.history] == [r["loss"] for r in halves.history]
    plain = train_spec(check_text(SPEC.format(augment="", epochs=4, name="Aug")), out_dir=tmp_path / "plain")
    assert plain.history[-1]["loss"] != whole.history[-1]["loss"]  # the augmentation did change training
