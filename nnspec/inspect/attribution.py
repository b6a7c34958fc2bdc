"""Attributions of one score (a class's logit, or an output) to the input, by Captum.

- saliency: |d score / d input| (captum.attr.Saliency, abs=True), per input value;
- Grad-CAM: ReLU(sum_k mean_ij(d score / d A_k) * A_k) on a layer's maps A (captum.attr.LayerGradCam),
  then bilinearly resized to the input's height and width (LayerAttribution.interpolate);
- integrated gradients: (x - b) * the mean gradient on the straight path from the baseline b to x
  (captum.attr.IntegratedGradients, Gauss-Legendre, STEPS points). The baseline is zero in the
  model's own units: after standardisation that is the training rows' mean, the "average row";
  without standardisation, all zeros. Completeness: the attributions sum to score(x) - score(b)
  up to the integration error, which Captum reports as the convergence delta.
"""
from __future__ import annotations

from ..extras import require

STEPS = 64  # integration points of integrated gradients


def _captum():
    return require("captum.attr")


def saliency(scorer, x, target: int):
    """[N, *input] |gradient| of scores[:, target] with respect to x."""
    x = x.detach().clone().requires_grad_(True)  # as Captum wants it (else it warns and does this itself)
    return _captum().Saliency(scorer).attribute(x, target=target, abs=True).detach()


def grad_cam(scorer, probe, x, target: int):
    """(the map at the layer's resolution [N, 1, h, w], the map resized to the input [N, 1, H, W])."""
    attr = _captum()
    cam = attr.LayerGradCam(scorer, probe).attribute(x, target=target, relu_attributions=True).detach()
    size = tuple(x.shape[-2:])
    return cam, attr.LayerAttribution.interpolate(cam, size, interpolate_mode="bilinear").detach()


def integrated_gradients(scorer, x, target: int, steps: int = STEPS):
    """(attributions shaped as x, convergence delta per row)."""
    import torch

    ig = _captum().IntegratedGradients(scorer)
    values, delta = ig.attribute(x, baselines=torch.zeros_like(x), target=target, n_steps=steps,
                                 method="gausslegendre", return_convergence_delta=True)
    return values.detach(), delta.detach()


def feature_maps(scorer, probes: dict, x) -> tuple:
    """(the scores [N, classes], {layer name: the maps its probe passed on, [N, C, H, W]}), the maps
    recorded by forward hooks during one forward pass."""
    import torch

    seen, handles = {}, []
    for name, probe in probes.items():
        handles.append(probe.register_forward_hook(lambda _m, _i, out, name=name: seen.__setitem__(name, out.detach())))
    try:
        with torch.no_grad():
            scores = scorer(x)
    finally:
        for h in handles:
            h.remove()
    return scores, seen
