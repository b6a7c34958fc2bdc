"""Writes the bad .npz files of this folder (run once; the files are committed). Each one is wrong
in one way for the spec tabular.nn (input features: [4], 3 classes)."""
import numpy as np

rng = np.random.default_rng(0)
x = rng.standard_normal((12, 4)).astype(np.float32)
y = np.arange(12) % 3

np.savez("wrong_keys.npz", features=x, labels=y)
np.savez("no_labels.npz", x=x)
np.savez("wrong_shape.npz", x=rng.standard_normal((12, 5)).astype(np.float32), y=y)
np.savez("text_features.npz", x=np.array([["a", "b", "c", "d"]] * 12), y=y)
np.savez("object_array.npz", x=np.array([{"a": 1}] * 12, dtype=object), y=y)  # needs pickle: refused
np.savez("length_mismatch.npz", x=x, y=y[:9])
np.savez("zero_rows.npz", x=x[:0], y=y[:0])
nan_x = x.copy()
nan_x[7, 2] = np.nan
np.savez("nan_features.npz", x=nan_x, y=y)
np.savez("label_out_of_range.npz", x=x, y=np.where(y == 2, 5, y))
np.save("plain_array.npy", x)
