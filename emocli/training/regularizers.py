"""Regularizers of the fine-tuning loop (`finetune --ema-decay / --llrd / --rdrop`, RegularizationConfig).

- WeightEMA: an exponential moving average of the trainable weights, updated after each optimizer step; the
  loop evaluates (early stopping), tunes thresholds on and saves these averaged weights.
- layer_scales: layer-wise learning-rate decay for BERT-family encoders (their embeddings + list of layers).
- RDropLoss: R-Drop (Liang et al. 2021) around the task loss: two dropout passes of one batch, the mean of
  their task losses + alpha * the symmetric KL between their per-label Bernoulli outputs.

torch is imported inside functions, as everywhere in emocli.training.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from emocli.errors import InputError
from emocli.training.losses import LossOutput

# where BERT-family encoders keep their list of transformer layers (bert, roberta, xlm-roberta, electra,
# camembert, deberta: encoder.layer; distilbert: transformer.layer)
LAYER_LISTS = ("encoder.layer", "transformer.layer")


class WeightEMA:
    """Bias-corrected EMA of a module's trainable parameters: after k updates with weights w_1..w_k,

        ema_k = sum_i (1 - d) d^(k-i) w_i / (1 - d^k)

    so the weights before the first step (a random head) carry no weight, as in Adam's moment correction."""

    def __init__(self, module, decay: float):
        import torch

        self.decay = decay
        self.updates = 0
        self.params = {name: p for name, p in module.named_parameters() if p.requires_grad}
        self.accumulated = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in self.params.items()}

    def update(self) -> None:
        import torch

        self.updates += 1
        with torch.no_grad():
            for name, param in self.params.items():
                self.accumulated[name].mul_(self.decay).add_(param.detach().float(), alpha=1.0 - self.decay)

    def averaged(self) -> dict[str, Any]:
        """The bias-corrected average, by parameter name (the live weights before any update)."""
        if not self.updates:
            return {name: p.detach().clone() for name, p in self.params.items()}
        correction = 1.0 - self.decay ** self.updates
        return {name: (acc / correction).to(self.params[name].dtype) for name, acc in self.accumulated.items()}

    def copy_to_module(self) -> None:
        import torch

        with torch.no_grad():
            for name, value in self.averaged().items():
                self.params[name].copy_(value)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The averaged weights in the module for the block (evaluation, a saved state), the live ones after."""
        import torch

        live = {name: p.detach().clone() for name, p in self.params.items()}
        self.copy_to_module()
        try:
            yield
        finally:
            with torch.no_grad():
                for name, value in live.items():
                    self.params[name].copy_(value)


def _attribute(root, dotted: str):
    for part in dotted.split("."):
        root = getattr(root, part, None)
        if root is None:
            return None
    return root


def pretrained_encoder(module):
    """The pretrained encoder inside a transformers model (its `base_model_prefix` attribute), or None."""
    prefix = getattr(module, "base_model_prefix", "") or ""
    return getattr(module, prefix, None) if prefix else None


def encoder_layers(module) -> tuple[Any, list]:
    """(embeddings, layers bottom to top) of a model's pretrained encoder; InputError when it has no such split."""
    encoder = pretrained_encoder(module)
    embeddings = getattr(encoder, "embeddings", None) if encoder is not None else None
    layers = next((found for path in LAYER_LISTS if (found := _attribute(encoder, path)) is not None), None)
    if embeddings is None or layers is None or len(layers) == 0:
        raise InputError(f"--llrd needs a BERT-family encoder (embeddings + {' or '.join(LAYER_LISTS)}); "
                         f"{type(module).__name__} has none to split into layers",
                         hint="drop --llrd (with --arch small there are no encoder layers)")
    return embeddings, list(layers)


def layer_scales(module, factor: float) -> dict[int, float]:
    """id(param) -> learning-rate multiplier: the top encoder layer 1, each layer below x factor, the embeddings
    factor^n_layers. Encoder parameters outside embeddings and layers (a pooler) and the head are left out (1)."""
    embeddings, layers = encoder_layers(module)
    scales = {id(p): factor ** len(layers) for p in embeddings.parameters()}
    for depth, layer in enumerate(reversed(layers)):
        scales.update({id(p): factor ** depth for p in layer.parameters()})
    return scales


def symmetric_bernoulli_kl(logits_a, logits_b, mask):
    """Mean over known cells of (KL(p||q) + KL(q||p)) / 2 for per-label Bernoulli p = sigmoid(a), q = sigmoid(b).

    For Bernoullis the sum is (p - q)(logit p - logit q), which needs no log of a probability near 0 or 1."""
    import torch

    a, b = logits_a.float(), logits_b.float()
    cells = 0.5 * (torch.sigmoid(a) - torch.sigmoid(b)) * (a - b)
    known = mask.to(cells.dtype)
    return (cells * known).sum() / known.sum().clamp(min=1.0)


class RDropLoss:
    """R-Drop around a task loss: loss = (task(a) + task(b)) / 2 + alpha * symmetric KL(a, b)."""

    def __init__(self, loss_fn, alpha: float):
        self.loss_fn = loss_fn
        self.alpha = alpha

    def __call__(self, logits_a, logits_b, targets, mask, embeddings_a=None, embeddings_b=None) -> LossOutput:
        first = self.loss_fn(logits_a, targets, mask, embeddings_a)
        second = self.loss_fn(logits_b, targets, mask, embeddings_b)
        total = 0.5 * (first.total + second.total) + self.alpha * symmetric_bernoulli_kl(logits_a, logits_b, mask)
        return LossOutput(total, 0.5 * (first.per_class + second.per_class), first.known)


def doubled(batch: dict) -> dict:
    """One batch twice over (one forward pass, independent dropout masks for each copy)."""
    import torch

    return {key: torch.cat([value, value]) for key, value in batch.items()}
