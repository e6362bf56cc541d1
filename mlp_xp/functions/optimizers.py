"""Deprecated aliases of the NumPy path's updates (old names, positional options, ``accumulated``)."""

from ..backend import numpy_path
from ..backend.scratch import fresh
from ..reference.optimizer import adam_corrections

__all__ = ["adam_corrections", "adam_update", "add_weight_penalty", "sgd_update"]
add_weight_penalty = numpy_path.add_penalties


def sgd_update(
    params,
    grads,
    velocity,
    n_weights,
    lr,
    momentum=0.0,
    nesterov=False,
    l2=0.0,
    l1=0.0,
    accumulated=False,
    scratch=fresh,
):
    numpy_path.sgd_update(
        params,
        grads,
        velocity,
        n_weights,
        lr,
        momentum=momentum,
        nesterov=nesterov,
        l2=l2,
        l1=l1,
        folded=accumulated,
        scratch=scratch,
    )


def adam_update(
    params, grads, m, v, n_weights, lr, step, beta1=0.9, beta2=0.999, eps=1e-8, l2=0.0, l1=0.0, scratch=fresh
):
    numpy_path.adam_update(
        params, grads, m, v, n_weights, lr, step, beta1=beta1, beta2=beta2, eps=eps, l2=l2, l1=l1, scratch=scratch
    )
