"""ONNX export: a trained MLP as an ONNX graph built with the ``onnx`` package's own helpers.

The graph takes what :meth:`mlp_xp.MLP.predict_proba` takes, a (N, d) array of the model's float dtype named
``input``, and computes the same forward pass: per layer ``MatMul`` by W (fan_in, fan_out) and ``Add`` of b, then
the hidden activation (``Relu``, ``LeakyRelu`` with the model's slope, ``Sigmoid``, ``Tanh``, or none); then the
output of the loss: for cross_entropy ``Softmax`` over axis 1 (``probabilities``) and its ``ArgMax``
(``label``, int64); for binary_cross_entropy ``Sigmoid`` (``probabilities``) and ``label`` = probability > 0.5
(bool, one column per output); for mse the linear output (``predictions``). Opset :data:`OPSET` of the default
ONNX domain.

A model trained on a table keeps its preprocessing (standardization, one-hot categories) and class labels
beside the weights; the graph takes the encoded features, not the raw columns, and its metadata name them
(``mlp_xp.features``, as ``column`` or ``column=category``) and the labels (``mlp_xp.labels``, JSON), so that
``label`` k means ``labels[k]``. Encode rows with ``MLP.load(path).preprocessing.transform(frame)``.
"""

from __future__ import annotations

import json

import numpy as np

from .errors import ConfigError, ModelFileError, install_hint
from .files import atomic_writer

#: The opset of the default domain the graphs use (Softmax over one axis, as here, since opset 13).
OPSET = 17
_ACTIVATION_OPS = {"relu": "Relu", "leaky_relu": "LeakyRelu", "sigmoid": "Sigmoid", "tanh": "Tanh"}


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ModelFileError(f"ONNX export needs the onnx package: {install_hint('onnx')}") from None
    return onnx


def to_onnx_model(model):
    """The ``onnx.ModelProto`` of ``model`` (an :class:`mlp_xp.MLP`), checked by ``onnx.checker``."""
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    dtype = np.dtype(model.dtype)
    elem = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}.get(dtype)
    if elem is None:
        raise ConfigError(f"ONNX export takes float32 or float64 models, not {dtype}")
    nodes, inits = [], []
    h = "input"
    layers = model.weights()
    for l, (W, b) in enumerate(layers, start=1):
        inits += [
            numpy_helper.from_array(np.asarray(W, dtype), f"W{l}"),
            numpy_helper.from_array(np.asarray(b, dtype), f"b{l}"),
        ]
        nodes += [
            helper.make_node("MatMul", [h, f"W{l}"], [f"xw{l}"]),
            helper.make_node("Add", [f"xw{l}", f"b{l}"], [f"z{l}"]),
        ]
        h = f"z{l}"
        if l < len(layers):
            act = model.activations[l - 1]
            if act in _ACTIVATION_OPS:
                extra = {"alpha": float(model.leaky_slope)} if act == "leaky_relu" else {}
                nodes.append(helper.make_node(_ACTIVATION_OPS[act], [h], [f"h{l}"], **extra))
                h = f"h{l}"
    n_out = model.sizes[-1]
    if model.loss == "cross_entropy":
        nodes += [
            helper.make_node("Softmax", [h], ["probabilities"], axis=1),
            helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
        ]
        outputs = [
            helper.make_tensor_value_info("probabilities", elem, ["N", n_out]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
        ]
    elif model.loss == "binary_cross_entropy":
        inits.append(numpy_helper.from_array(np.asarray(0.5, dtype), "half"))
        nodes += [
            helper.make_node("Sigmoid", [h], ["probabilities"]),
            helper.make_node("Greater", ["probabilities", "half"], ["label"]),
        ]
        outputs = [
            helper.make_tensor_value_info("probabilities", elem, ["N", n_out]),
            helper.make_tensor_value_info("label", TensorProto.BOOL, ["N", n_out]),
        ]
    elif model.target_scaler is not None:  # the target was standardized for training: back to its units
        inits += [
            numpy_helper.from_array(model.target_scaler.scale.astype(dtype), "target_scale"),
            numpy_helper.from_array(model.target_scaler.mean.astype(dtype), "target_mean"),
        ]
        nodes += [
            helper.make_node("Mul", [h, "target_scale"], ["scaled"]),
            helper.make_node("Add", ["scaled", "target_mean"], ["predictions"]),
        ]
        outputs = [helper.make_tensor_value_info("predictions", elem, ["N", n_out])]
    else:
        nodes.append(helper.make_node("Identity", [h], ["predictions"]))
        outputs = [helper.make_tensor_value_info("predictions", elem, ["N", n_out])]
    graph = helper.make_graph(
        nodes, "mlp_xp", [helper.make_tensor_value_info("input", elem, ["N", model.sizes[0]])], outputs, inits
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="mlp_xp")
    table = {}
    if model.preprocessing is not None:
        table["mlp_xp.features"] = json.dumps(model.preprocessing.feature_names_out())
    if model.labels is not None:
        table["mlp_xp.labels"] = json.dumps(model.labels.to_json())
    helper.set_model_props(proto, table)
    onnx.checker.check_model(proto)
    return proto


def save_onnx(model, path) -> None:
    """Write ``model`` as an ONNX file at ``path``, whole or not at all."""
    data = to_onnx_model(model).SerializeToString()
    with atomic_writer(path) as f:
        f.write(data)
