"""Backpropagation on augmented batches: elastic deformations, random shifts, flips and MixUp from the step's key.

The recipe of "Scaling MLPs: A Tale of Inductive Bias" (Bachmann et al., 2023, arXiv 2306.13575): every training
batch is augmented (random crops/shifts and flips of the images, then MixUp with alpha 0.8) before the usual
backprop update; label smoothing is the classification task's ``label_smoothing`` and LAMB is
``optimizer.name = 'lamb'`` (``optax.lamb``). The augmentations are the pure functions of ``zoo.recipes.augment``
applied inside the step with the key ``fold_in(fold_in(state.rng, step), 1)``, so they are deterministic by
``(seed, step)`` and a resumed run sees the same augmented batches. Evaluation is on clean inputs.

:class:`Augmented` fields (beyond ``model``, ``task``, ``optimizer``):

* ``shift``: the largest random translation in pixels (1 by default: the +-1-pixel shifts for 8x8 digits).
* ``flip``: random left-right flips (False by default: digits are not mirror-symmetric).
* ``mixup_alpha``: MixUp's Beta parameter (0.8, the paper's); 0 turns MixUp off.
* ``elastic_alpha``, ``elastic_sigma``: Simard et al.'s elastic distortion (``augment.elastic_deform``), applied
  first; ``elastic_alpha = 0`` (default) turns it off. The prototype network's recipe (Li et al., 2018) uses it.
* ``augment``: True (default): the recipe. False: plain :class:`~zoo.recipes.procedures.backprop.Backprop` on clean
  batches, the ablation of the mechanism.

MixUp mixes the loss, ``lam * L(out, y) + (1 - lam) * L(out, y[perm])``, which for the (optionally smoothed)
cross-entropy is the loss on mixed targets, so any task with a ``target_key`` works unchanged.
"""

from __future__ import annotations

import dataclasses

import jax
import optax
import jax.numpy as jnp

from zoo.recipes import augment as augment_lib
from zoo.recipes.procedures.backprop import Backprop, call_model, sown_losses

__all__ = ["Augmented"]


@dataclasses.dataclass(frozen=True)
class Augmented(Backprop):
  """:class:`Backprop` whose every training batch is shifted / flipped / mixed up (see the module docstring)."""
  shift: int = 1
  flip: bool = False
  mixup_alpha: float = 0.8
  elastic_alpha: float = 0.0
  elastic_sigma: float = 4.0
  augment: bool = True

  def __post_init__(self):
    if isinstance(self.shift, bool) or not isinstance(self.shift, int) or self.shift < 0:
      raise ValueError(f"Augmented: `shift` must be an integer >= 0; got {self.shift!r}.")
    if self.mixup_alpha < 0:
      raise ValueError(f"Augmented: `mixup_alpha` must be >= 0 (0 turns MixUp off); got {self.mixup_alpha!r}.")
    if not self.elastic_alpha >= 0 or not self.elastic_sigma > 0:
      raise ValueError(f"Augmented: `elastic_alpha` must be >= 0 (0: off) and `elastic_sigma` > 0; got "
                       f"{self.elastic_alpha!r}, {self.elastic_sigma!r}.")

  def augment_batch(self, key, batch):
    """``batch`` with its inputs augmented, and MixUp's ``(perm, lam)`` (None without MixUp). Pure in ``key``."""
    if not self.augment:
      return batch, None
    shift_key, flip_key, mix_key = jax.random.split(key, 3)
    key_in = self.task.input_key
    x = batch[key_in]
    if (self.shift or self.flip or self.elastic_alpha) and x.ndim != 4:
      raise ValueError(f"Augmented: elastic deformations, shifts and flips need images [batch, H, W, C] under "
                       f"{key_in!r}; got shape {tuple(x.shape)} (set elastic_alpha=0, shift=0, flip=False for "
                       "non-image inputs).")
    if self.elastic_alpha:  # its own key, folded from the step's, so the other draws stay as they were
      x = augment_lib.elastic_deform(jax.random.fold_in(key, 3), x, alpha=float(self.elastic_alpha),
                                     sigma=float(self.elastic_sigma))
    if self.shift:
      x = augment_lib.random_shift(shift_key, x, self.shift)
    if self.flip:
      x = augment_lib.random_flip(flip_key, x)
    mix = None
    if self.mixup_alpha:
      x, perm, lam = augment_lib.mixup(mix_key, x, self.mixup_alpha)
      mix = (perm, lam)
    return {**batch, key_in: x}, mix

  def step(self, state, batch):
    if not self.augment:
      return super().step(state, batch)
    key = augment_lib.step_key(augment_lib.step_key(state.rng, state.step), 1)
    batch, mix = self.augment_batch(key, batch)
    if mix is None:
      return super().step(state, batch)
    return self._mixed_step(state, batch, mix)

  def _mixed_step(self, state, batch, mix):
    perm, lam = mix
    target = self.task.target_key
    other = {**batch, target: batch[target][perm]}

    def loss_fn(params, rng):
      dropout_rng, noise_rng = jax.random.split(rng)
      mutable = [*state.model_state.keys(), "losses"]
      outputs, collections = call_model(self.model, {"params": params, **state.model_state}, self.task.inputs(batch),
                                        train=True, rngs={"dropout": dropout_rng, "noise": noise_rng},
                                        mutable=mutable)
      task_loss = jnp.mean(lam * self.task.loss(outputs, batch) + (1 - lam) * self.task.loss(outputs, other))
      new_state = {k: v for k, v in collections.items() if k != "losses"}
      return task_loss + sown_losses(collections), (new_state, task_loss)

    rng = jax.random.fold_in(state.rng, state.step)
    (_, (model_state, task_loss)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, rng)
    updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": task_loss, "mixup_lambda": lam, "grad_norm": optax.tree.norm(grads)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state, model_state=model_state), metrics
