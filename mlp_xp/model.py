"""The multilayer perceptron: parameters in one flat buffer, forward and backward by hand.

The notes write one sample as a column, z = W h + b. Here a batch holds one sample per row and each layer's
W is stored (fan_in, fan_out), the notes' W transposed (scikit-learn's ``coefs_`` layout), so for layers
l = 1..L with h_0 = x the same equations read (the formulas: mlp_xp/reference/layer.py and loss.py):

    forward    z_l = h_{l-1} W_l + b_l          h_l = g_l(z_l)          (g_L is the loss's output layer)
    output     g_L = dL/dz_L = (p - y) / B      (softmax, sigmoid or identity)
    backward   dW_l = h_{l-1}^T g_l            db_l = sum over rows of g_l
               dh_{l-1} = g_l W_l^T            g_{l-1} = dh_{l-1} * g'_{l-1}(z_{l-1})

Every line is one backend op, so a step is 2L ops forward, one for the loss and 4L - 2 backward.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import settings
from .backend import Ops, get_backend
from .backend.base import require_memory
from .data.preprocess import LabelVocabulary, TablePreprocessor, TargetScaler, is_frame
from .deprecation import warn_renamed
from .errors import ConfigError, DataError, ModelFileError
from .reference.layer import LEAKY_SLOPE
from .reference.loss import OUTPUTS
from .serialization import is_safetensors, load_arrays, load_safetensors, save_arrays, save_safetensors
from .settings import INITS  # noqa: F401 (its old home)
from .validation import check_features, check_sparse_features, is_sparse

if TYPE_CHECKING:
    from .optim import Gradients


class Layout:
    """Where each layer's W and b live in the flat parameter buffer: all weights first, then all biases.

    Keeping the weights a prefix ``[:n_weights]`` lets one optimizer launch apply the L2 and L1 penalties to
    the weights and not the biases with a single bound instead of a mask.
    """

    def __init__(self, sizes: list[int]) -> None:
        self.sizes = list(sizes)
        #: (fan_in, fan_out) of each W_l: the shape of its view
        self.weight_shapes = list(zip(self.sizes[:-1], self.sizes[1:]))
        w_sizes, b_sizes = [i * o for i, o in self.weight_shapes], self.sizes[1:]
        self.n_weights = sum(w_sizes)
        self.n_params = self.n_weights + sum(b_sizes)
        self.w_offsets = [sum(w_sizes[:l]) for l in range(len(w_sizes))]
        self.b_offsets = [self.n_weights + sum(b_sizes[:l]) for l in range(len(b_sizes))]

    def views(self, flat) -> tuple[list, list]:
        """Per-layer views into a flat buffer: W_l of shape (fan_in, fan_out) and b_l of shape (fan_out,)."""
        Ws = [flat[s : s + i * o].reshape(i, o) for s, (i, o) in zip(self.w_offsets, self.weight_shapes)]
        bs = [flat[s : s + o] for s, (_, o) in zip(self.b_offsets, self.weight_shapes)]
        return Ws, bs

    def update_parts(self) -> list[tuple[int, int]]:
        """[lo, hi) of each W_l in the flat buffer, then one of all the biases: the parts of an update applied
        layer by layer (:class:`mlp_xp.step.TrainStep`)."""
        ws = [(s, s + i * o) for s, (i, o) in zip(self.w_offsets, self.weight_shapes)]
        return [*ws, (self.n_weights, self.n_params)]

    @property
    def w_shapes(self) -> list[tuple[int, int]]:
        """Deprecated: (fan_out, fan_in) of each W_l, the notes' shape, as before; :attr:`weight_shapes` holds the
        shape of the views, (fan_in, fan_out)."""
        warn_renamed("Layout.w_shapes (fan_out, fan_in)", "Layout.weight_shapes (fan_in, fan_out)")
        return [(o, i) for i, o in self.weight_shapes]


@dataclass
class Workspace:
    """Buffers for one batch size, allocated once: the step writes into them and nothing else.

    ``hs[l]`` holds h_{l+1} (the last one holds the logits, then dL/dz); ``dhs[l]`` holds dh for hidden
    layer l+1; ``acc`` is the float64 pair (sum of losses, correct rows or squared error).
    """

    batch_size: int
    xb: object
    yb: object
    hs: list
    dhs: list
    acc: object
    wb: object = None  #: the batch's row weights, for a run with sample weights

    def rows(self, n: int) -> Workspace:
        """The same buffers cut to the first n rows (for a last batch smaller than the rest)."""
        if n == self.batch_size:
            return self
        wb = None if self.wb is None else self.wb[:n]
        hs, dhs = [h[:n] for h in self.hs], [d[:n] for d in self.dhs]
        return Workspace(n, self.xb[:n], self.yb[:n], hs, dhs, self.acc, wb)


class MLP:
    """A multilayer perceptron with hand-derived backpropagation on a chosen backend.

    Parameters
    ----------
    sizes : list of int
        Layer widths, input first and output last, e.g. ``[784, 512, 256, 10]``.
    activation : str or list of str
        Hidden activation(s): relu, leaky_relu, sigmoid, tanh or identity (one per hidden layer if a list).
    loss : str
        ``cross_entropy`` (softmax output, integer labels), ``binary_cross_entropy`` (sigmoid output,
        0/1 targets; binary or multi-label) or ``mse`` (identity output, regression).
    init : str
        ``glorot`` (uniform in +-sqrt(6 / (fan_in + fan_out))) or ``he`` (normal, std sqrt(2 / fan_in));
        biases start at zero.
    dtype : str
        ``float32`` (default) or ``float64``.
    device : str or Ops
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (see :func:`mlp_xp.get_backend`).
    seed : int
        Seed of the initial weights; the same seed gives the same weights on every backend.
    leaky_slope : float
        Slope of leaky ReLU for negative inputs.
    """

    def __init__(
        self,
        sizes,
        activation="relu",
        loss: str = "cross_entropy",
        *,
        init: str = "glorot",
        dtype="float32",
        device="auto",
        seed: int = 0,
        leaky_slope: float = LEAKY_SLOPE,
    ) -> None:
        self.sizes = _check_sizes(sizes)
        self.activations = hidden_activations(activation, len(self.sizes) - 2)
        self.loss = settings.check("loss", loss)
        self.output = OUTPUTS[self.loss]
        if self.loss == "cross_entropy" and self.sizes[-1] < 2:
            raise ConfigError(
                "cross_entropy needs at least 2 output classes: use binary_cross_entropy with "
                "one output for a binary problem"
            )
        self.init = settings.check("init", init)
        self.dtype = settings.check("dtype", dtype)
        self.leaky_slope = settings.check("leaky_slope", leaky_slope)
        self.seed = settings.check("seed", seed)
        self.layout = Layout(self.sizes)
        n = self.layout.n_params
        self.ops: Ops = device if isinstance(device, Ops) else get_backend(settings.check("device", device), n_params=n)
        # the host draws them (with a float64 temporary of the largest layer), then the backend holds a copy
        require_memory(
            self.ops,
            n * self.dtype.itemsize * 2 + 8 * max(a * b for a, b in zip(self.sizes, self.sizes[1:])),
            f"the model's {n:,} parameters",
            "use smaller hidden layers",
        )
        self.params = self.ops.asarray(initial_params(self.layout, self.init, self.seed, self.dtype))
        self.W, self.b = self.layout.views(self.params)
        #: What the weights were trained on, as a saved model records it: the settings that shape the math
        #: (set by :func:`mlp_xp.fit`), the dataset and its data seed (set by the command line), the library's
        #: version. None for an untrained model. Never times, hosts or paths.
        self.trained_on: dict | None = None
        #: A fitted :class:`~mlp_xp.data.preprocess.TablePreprocessor` for a model trained on a table: a pandas
        #: DataFrame of raw rows given to predict goes through it. Saved with the model.
        self.preprocessing: TablePreprocessor | None = None
        #: The class labels (:class:`~mlp_xp.data.preprocess.LabelVocabulary`) when the model was trained on
        #: labels other than 0..C-1 (a table's): predict returns them. Saved with the model.
        self.labels: LabelVocabulary | None = None
        #: The table's target column, for a model trained on a table (evaluate's default). Saved with the model.
        self.target: str | None = None
        #: For a regressor trained on a table: the target's standardization (:class:`TargetScaler`), which
        #: predict undoes, so that outputs are in the target's units. Saved with the model.
        self.target_scaler: TargetScaler | None = None

    # ---- description ----
    @property
    def n_inputs(self) -> int:
        return self.sizes[0]

    @property
    def n_outputs(self) -> int:
        return self.sizes[-1]

    @property
    def n_layers(self) -> int:
        """Number of linear layers L."""
        return len(self.sizes) - 1

    def layer_activation(self, l: int) -> str:
        """Activation of linear layer l (0-based); the last layer's is applied by the loss."""
        return self.activations[l] if l < self.n_layers - 1 else "identity"

    def config(self) -> dict:
        """The architecture as plain JSON-able values (what a saved model records)."""
        return {
            "sizes": self.sizes,
            "activation": self.activations,
            "loss": self.loss,
            "init": self.init,
            "dtype": self.dtype.name,
            "seed": self.seed,
            "leaky_slope": self.leaky_slope,
        }

    def __repr__(self) -> str:
        acts = ",".join(sorted(set(self.activations))) or "none"
        return (
            f"MLP({'-'.join(map(str, self.sizes))}, activation={acts}, loss={self.loss}, "
            f"dtype={self.dtype.name}, device={self.ops.name})"
        )

    # ---- buffers ----
    def workspace(self, batch_size: int, *, with_grads: bool = True, weighted: bool = False) -> Workspace:
        """Allocate the buffers for batches of up to ``batch_size`` rows (``weighted``: and their row weights)."""
        ops, dt = self.ops, self.dtype
        if self.loss == "cross_entropy":
            yb = ops.empty((batch_size,), np.int32)
        else:
            yb = ops.empty((batch_size, self.n_outputs), dt)
        hs = [ops.empty((batch_size, n), dt) for n in self.sizes[1:]]
        dhs = [ops.empty((batch_size, n), dt) for n in self.sizes[1:-1]] if with_grads else []
        wb = ops.empty((batch_size,), dt) if weighted else None
        return Workspace(
            batch_size, ops.empty((batch_size, self.n_inputs), dt), yb, hs, dhs, ops.zeros((2,), np.float64), wb
        )

    # ---- the math ----
    def forward(self, x, ws: Workspace):
        """z_l = h_{l-1} W_l + b_l, h_l = g_l(z_l) for every layer; returns the logits z_L (in ws.hs[-1])."""
        ops, h = self.ops, x
        for l in range(self.n_layers):
            z = ws.hs[l]
            ops.matmul(h, self.W[l], z)
            ops.bias_act(z, self.b[l], self.layer_activation(l), self.leaky_slope)
            h = z
        return h

    def backward(self, x, ws: Workspace, grads: Gradients, after_layer: Callable[[int], None] | None = None) -> None:
        """Given dL/dz_L in ws.hs[-1], write dW_l and db_l of every layer into ``grads`` (the chain rule, layer
        by layer).

        ``grads`` comes from the optimizer (:meth:`mlp_xp.optim.Optimizer.gradients`). When it is momentum's
        velocity V, ``grads.momentum`` = mu and each product keeps mu times what it overwrites:
        V <- mu V + dL/dW, momentum's first line, at no extra cost.

        ``after_layer(l)`` is called as soon as dW_l and db_l are written and W_l is no longer read (its dh
        product comes first): the step can update W_l there, while its gradient is still in cache."""
        ops, momentum = self.ops, grads.momentum
        g = ws.hs[-1]
        for l in range(self.n_layers - 1, -1, -1):
            h_prev = ws.hs[l - 1] if l else x
            if l:
                dh = ws.dhs[l - 1]
                ops.matmul(g, self.W[l], dh, trans_b=True)  # dh_{l-1} = g_l W_l^T
            ops.matmul(h_prev, g, grads.dW[l], trans_a=True, accumulate=momentum)  # dW_l = h_{l-1}^T g_l
            ops.bias_grad(g, grads.db[l], accumulate=momentum)  # db_l = sum of g_l over the batch
            if after_layer is not None:
                after_layer(l)
            if l:
                ops.act_backward(dh, h_prev, self.activations[l - 1], self.leaky_slope)
                g = dh  # g_{l-1} = dh_{l-1} * g'(z_{l-1})

    # ---- host-facing helpers (allocate; not part of a training step) ----
    def encode(self, X) -> np.ndarray:
        """Host features as the network takes them: a DataFrame of raw rows through :attr:`preprocessing` (for
        a model trained on a table), anything else checked as numbers."""
        prep = self.preprocessing
        if is_frame(X) and prep is not None:
            X = prep.transform(X, self.dtype)
        elif prep is not None and np.ndim(X) == 2 and np.shape(X)[1] != self.n_inputs:
            cols = ", ".join(prep.columns[:8]) + (", ..." if len(prep.columns) > 8 else "")
            raise DataError(
                f"X has {np.shape(X)[1]} features, but this model was trained on a table of {len(prep.columns)} "
                f"columns ({cols}), which it encodes into {self.n_inputs}: pass a DataFrame of those columns"
            )
        if is_sparse(X):
            return check_sparse_features(X, self.n_inputs, self.dtype)
        return check_features(X, self.n_inputs, self.dtype)

    def predict_proba(self, X, batch_size: int = 4096) -> np.ndarray:
        """Outputs p for host data X: class probabilities (softmax), per-output probabilities (sigmoid)
        or values (identity), as a NumPy array of shape (n, outputs). A model trained on a table takes a
        DataFrame of its raw columns (see :meth:`encode`)."""
        X = self.encode(X)
        n = X.shape[0]
        bs = min(batch_size, n)
        ws = self.workspace(bs, with_grads=False)
        out = np.empty((n, self.n_outputs), self.dtype)
        for s in range(0, n, bs):
            part = ws.rows(min(bs, n - s))
            rows = X[s : s + part.batch_size]
            xb = self.ops.asarray(rows.toarray() if is_sparse(rows) else rows)  # sparse: a batch densified at a time
            z = self.forward(xb, part)
            self.ops.output_act(z, self.output)
            out[s : s + part.batch_size] = self.ops.to_host(z)
        if self.target_scaler is not None and self.loss == "mse":
            out = self.target_scaler.inverse(out)
        return out

    def predict(self, X, batch_size: int = 4096) -> np.ndarray:
        """Class index (argmax) for cross_entropy, 0/1 per output (p > 1/2) for binary_cross_entropy,
        values for mse; a single output column is returned as shape (n,). A model with :attr:`labels` returns
        the original labels instead of the class indices."""
        return self.labels_of(self.predict_proba(X, batch_size))

    def labels_of(self, p: np.ndarray) -> np.ndarray:
        """What :meth:`predict` makes of the outputs ``p`` of :meth:`predict_proba`."""
        if self.loss == "cross_entropy":
            p = p.argmax(axis=1)
        elif self.loss == "binary_cross_entropy":
            p = (p > 0.5).astype(np.int64)
        if p.ndim == 2 and p.shape[1] == 1:
            p = p[:, 0]
        return self.labels.decode(p) if self.labels is not None and p.ndim == 1 else p

    def get_flat(self) -> np.ndarray:
        """A host copy of the flat parameter buffer."""
        return self.ops.to_host(self.params)

    def set_flat(self, flat) -> None:
        """Overwrite all parameters from a host flat buffer of the right size."""
        flat = np.asarray(flat)
        if flat.shape != (self.layout.n_params,):
            raise ConfigError(f"expected {self.layout.n_params} parameters, got shape {flat.shape}")
        self.ops.copy(self.params, self.ops.asarray(flat, self.dtype))

    def weights(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Host copies of (W_l, b_l) for every layer, W_l of shape (fan_in, fan_out)."""
        Ws, bs = self.layout.views(self.get_flat())
        return list(zip(Ws, bs))

    def to(self, device) -> MLP:
        """A copy of this model on another backend (parameters copied bit for bit)."""
        other = MLP.from_config(self.config(), device)
        other.set_flat(self.get_flat())
        other._take_table(self._table_meta())
        return other

    def _table_meta(self) -> dict:
        """What a model trained on a table keeps beside its weights, as JSON (float64 statistics as lists of
        numbers, which JSON holds exactly)."""
        meta: dict = {}
        if self.preprocessing is not None:
            state, arrays = self.preprocessing.state()
            meta["preprocessing"] = {**state, **{k: v.tolist() for k, v in arrays.items()}}
        if self.labels is not None:
            meta["labels"] = self.labels.to_json()
        if self.target is not None:
            meta["target"] = self.target
        if self.target_scaler is not None:
            meta["target_scaling"] = self.target_scaler.to_json()
        return meta

    def _take_table(self, meta: dict) -> None:
        """The inverse of :meth:`_table_meta` (a :class:`DataError` for a damaged entry)."""
        p = meta.get("preprocessing")
        if p is not None:
            arrays = {k: np.asarray(p.get(k, []), np.float64) for k in ("mean", "scale")}
            self.preprocessing = TablePreprocessor.from_state(p, arrays)
            if self.preprocessing.n_features_out != self.n_inputs:
                raise DataError(
                    f"the stored preprocessing gives {self.preprocessing.n_features_out} features, but the "
                    f"model takes {self.n_inputs}"
                )
        if meta.get("labels") is not None:
            self.labels = LabelVocabulary.from_json(meta["labels"])
            expected = self.n_outputs if self.loss == "cross_entropy" else 2
            if len(self.labels) != expected:
                raise DataError(f"the stored class labels are {len(self.labels)}, the model has {expected} classes")
        target = meta.get("target")
        self.target = str(target) if target is not None else None
        if meta.get("target_scaling") is not None:
            self.target_scaler = TargetScaler.from_json(meta["target_scaling"])
            if len(self.target_scaler.mean) != self.n_outputs or self.loss != "mse":
                raise DataError("the stored target scaling does not match the model's outputs")

    @classmethod
    def from_config(cls, config: dict, device="auto") -> MLP:
        """A freshly initialized model of the architecture :meth:`config` describes, on ``device``."""
        return cls(
            config["sizes"],
            config["activation"],
            config["loss"],
            init=config.get("init", "glorot"),
            dtype=config["dtype"],
            device=device,
            seed=config.get("seed", 0),
            leaky_slope=config.get("leaky_slope", LEAKY_SLOPE),
        )

    def __reduce__(self):
        # The parameters travel as a host array and come back as one flat buffer with fresh views into it.
        return _rebuild, (self.config(), self.get_flat(), self.ops.device, self._table_meta())

    def save(self, path) -> None:
        """Save to ``path``: the W_l and b_l as plain arrays plus the architecture as JSON metadata
        (:mod:`mlp_xp.serialization`), written atomically. A path ending in ``.safetensors`` writes safetensors,
        with the weights named and laid out as PyTorch's ``nn.Sequential`` of ``nn.Linear`` layers holds them
        (``0.weight``, ``0.bias``, ``2.weight``, ...: ``load_state_dict`` takes them); else an ``.npz``."""
        meta = {**self.config(), **self._table_meta()}
        if self.trained_on is not None:
            meta["trained_on"] = self.trained_on
        layers = list(self.weights())
        self._check_finite_weights(path, layers)
        if is_safetensors(path):
            save_safetensors(path, meta, layers)
            return
        arrays = {}
        for l, (W, b) in enumerate(layers, start=1):
            arrays[f"W{l}"], arrays[f"b{l}"] = W, b
        if "preprocessing" in meta:  # an .npz holds the statistics as arrays (safetensors: as JSON, above)
            state, stats = self.preprocessing.state()
            meta["preprocessing"] = state
            arrays.update({f"preprocessing.{k}": v for k, v in stats.items()})
        save_arrays(path, meta, arrays)

    def to_onnx(self, path) -> None:
        """Export to an ONNX file (:mod:`mlp_xp.export`: the same forward pass, probabilities and labels)."""
        from .export import save_onnx

        self._check_finite_weights(path, self.weights())
        save_onnx(self, path)

    def nonfinite_arrays(self, layers=None) -> list[str]:
        """The names (W1, b1, ...) of the arrays holding NaN or Inf, of ``layers`` (:meth:`weights`' pairs; by
        default the model's own)."""
        if layers is None and self.ops.all_finite(self.params):
            return []  # (the usual answer, without a host copy of every array)
        pairs = enumerate(self.weights() if layers is None else layers, start=1)
        return [f"{k}{l}" for l, (W, b) in pairs for k, a in (("W", W), ("b", b)) if not np.isfinite(a).all()]

    def _check_finite_weights(self, path, layers) -> None:
        """Refuse to write NaN or Inf weights (before anything is written): :meth:`load` refuses such a file, and
        it must not replace a good one."""
        bad = self.nonfinite_arrays(layers)
        if bad:
            raise ModelFileError(
                f"this model holds NaN or Inf weights ({bad[0]}), so nothing was written to {os.fspath(path)!r}: "
                "retrain (with a lower learning rate), or load its last good file"
            )

    @classmethod
    def load(cls, path, device="auto") -> MLP:
        """Load a model saved by :meth:`save` (on any backend) onto ``device``; pickle is never used."""
        meta, arrays = load_safetensors(path) if is_safetensors(path) else load_arrays(path)
        try:
            model = cls.from_config(meta, device)
        except (KeyError, TypeError, ConfigError) as e:
            raise ModelFileError(f"{os.fspath(path)!r} has invalid metadata ({e}): save the model again") from None
        flat = np.empty(model.layout.n_params, model.dtype)
        Ws, bs = model.layout.views(flat)
        for l, (W, b) in enumerate(zip(Ws, bs), start=1):
            for name, dst in ((f"W{l}", W), (f"b{l}", b)):
                src = arrays.get(name)
                if src is None or src.shape != dst.shape:
                    got = "missing" if src is None else f"shape {src.shape}"
                    raise ModelFileError(
                        f"{os.fspath(path)!r}: {name} is {got}, expected shape {dst.shape}; the "
                        "file is corrupt, save the model again"
                    )
                dst[...] = src
        trained_on = meta.get("trained_on")
        if not np.isfinite(flat).all():
            raise ModelFileError(
                f"{os.fspath(path)!r} holds NaN or Inf weights: retrain (with a lower learning rate) and save"
            )
        model.set_flat(flat)
        model.trained_on = trained_on if isinstance(trained_on, dict) else None
        try:
            if isinstance(meta.get("preprocessing"), dict):
                for k in ("mean", "scale"):
                    if f"preprocessing.{k}" in arrays:
                        meta["preprocessing"][k] = arrays[f"preprocessing.{k}"]
            model._take_table(meta)
        except DataError as e:
            raise ModelFileError(f"{os.fspath(path)!r}: {e}: save the model again") from None
        return model


def _rebuild(config: dict, flat: np.ndarray, device: str, table: dict | None = None) -> MLP:
    model = MLP.from_config(config, device)
    model.set_flat(flat)
    model._take_table(table or {})
    return model


def initial_params(layout: Layout, init: str, seed: int, dtype) -> np.ndarray:
    """The flat initial parameters, drawn on the host so that every backend starts from the same numbers.

    glorot: W ~ U(-r, r), r = sqrt(6) / sqrt(fan_in + fan_out);  he: W ~ N(0, 2 / fan_in);  b = 0.
    """
    rng = np.random.default_rng(seed)
    flat = np.zeros(layout.n_params, dtype)
    Ws, _ = layout.views(flat)
    for W in Ws:
        fan_in, fan_out = W.shape
        if init == "glorot":
            r = np.sqrt(6.0) / np.sqrt(fan_in + fan_out)
            W[...] = rng.uniform(-r, r, W.shape)
        else:
            W[...] = rng.normal(0.0, np.sqrt(2.0 / fan_in), W.shape)
    return flat


def hidden_activations(activation, n_hidden: int) -> list[str]:
    """One activation name per hidden layer, from one name for all or a list of them; ConfigError otherwise."""
    acts = settings.check("activation", activation)
    acts = [acts] * n_hidden if isinstance(acts, str) else acts
    if len(acts) != n_hidden:
        layers = "layer" if n_hidden == 1 else "layers"
        raise ConfigError(
            f"{len(acts)} activations given for {n_hidden} hidden {layers}: give one per hidden layer, or a single "
            "name for all"
        )
    return acts


def _check_sizes(sizes) -> list[int]:
    try:
        out = [int(s) for s in sizes]
    except (TypeError, ValueError):
        raise ConfigError(f"sizes must be a list of layer widths such as [784, 256, 10], got {sizes!r}") from None
    if len(out) < 2:
        raise ConfigError(f"sizes needs at least an input and an output width, got {sizes!r}")
    if any(s < 1 for s in out) or any(float(s) != int(s) for s in sizes):
        raise ConfigError(f"every layer width must be a positive integer, got {sizes!r}")
    return out
