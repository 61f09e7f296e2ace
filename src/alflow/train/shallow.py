"""Fit the members of a shallow ensemble on a trained MACE backbone.

The backbone (everything up to the hidden layer of the final readout) is trained
as usual by mace-torch and then frozen. Each member m replaces the readout's output
weights w0 by ``w0 + d_m``; its energy and forces are linear in ``d_m``:

    E_m = E0 + s G · d_m,      F_m = F0 - s J^T d_m,

with E0, F0 the backbone model's prediction, s the model's energy scale,
``G = sum_i h_i`` the summed hidden features and ``J = dG/dr``. G and J are computed
once per frame. Two fits of the offsets are available:

- ``rigidity`` (the default): the last layer as a Bayesian linear model (the
  prediction-rigidity view of Bigi et al., 2024). The members' mean is the trained
  model (``d`` averages to zero); their spread spans the M-1 directions of largest
  posterior variance of ``d`` given the training energies per atom and force
  components (each channel's noise is the trained model's residual variance),
  scaled so that the predicted force variance on the training frames matches the
  observed one. Closed form: the same frames give the same ensemble to rounding, in
  milliseconds.
- ``nll``: the members are fitted jointly by L-BFGS on the Gaussian negative
  log-likelihood of the reference energies and forces under the ensemble's mean
  and variance (Kellner & Ceriotti, 2024). The likelihood is flat in many
  directions and still falls after thousands of iterations, so where the fit stops
  depends on rounding: kept for comparison.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from alflow.uncertainty.shallow import (
    attach_members,
    energy_scale,
    last_readout,
    output_weights,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    from ase import Atoms

    from alflow.frames import Frame

#: Variance floors (eV²/atom², eV²/Å²) keep the likelihood finite.
_ENERGY_FLOOR = 1e-10
_FORCE_FLOOR = 1e-8
#: Directions whose precision is below this fraction of the largest get no variance:
#: hidden units that no training atom activates would otherwise take the members.
_RCOND = 1e-12


@dataclass
class LinearisedFrames:
    """Everything the member fit needs, for all training frames at once.

    Attributes
    ----------
    energy0, energy_ref
        Backbone and reference energies per atom, shape (F,).
    g
        Summed hidden features per atom, shape (F, H), already times ``s``.
    force0, force_ref
        Backbone and reference forces of all atoms, shape (A, 3).
    jac
        Derivatives of G (times ``s``) for all atoms, shape (H, A, 3).
    """

    energy0: torch.Tensor
    energy_ref: torch.Tensor
    g: torch.Tensor
    force0: torch.Tensor
    force_ref: torch.Tensor
    jac: torch.Tensor


def load_mace(path: str | Path, dtype: str = "float64") -> Any:
    """A MACE model and a calculator wrapping it (for graph construction)."""
    from mace.calculators import MACECalculator

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*weights_only.*")
        calc = MACECalculator(model_paths=str(path), device="cpu", default_dtype=dtype)
    return calc.models[0], calc


def linearise(model_path: str | Path, frames: Sequence[Frame], dtype: str = "float64") -> Any:
    """Backbone predictions, G and J for every frame (see module docstring)."""
    model, calc = load_mace(model_path, dtype)
    rows: dict[str, list[torch.Tensor]] = {k: [] for k in ("e0", "eref", "g", "f0", "fref", "j")}
    # a list, not a lazy zip: the hook must be gone before the model is saved
    linearised = list(_linearised(model, calc, [f.to_atoms(with_labels=False) for f in frames]))
    for frame, (energy, g, forces, jac) in zip(frames, linearised, strict=True):
        n = frame.n_atoms
        rows["e0"].append(energy.reshape(1) / n)
        rows["eref"].append(torch.tensor([frame.energy / n], dtype=g.dtype))
        rows["g"].append(g.unsqueeze(0) / n)
        rows["f0"].append(forces)
        rows["fref"].append(torch.tensor(np.asarray(frame.forces), dtype=g.dtype))
        rows["j"].append(jac)
    linear = LinearisedFrames(
        energy0=torch.cat(rows["e0"]),
        energy_ref=torch.cat(rows["eref"]),
        g=torch.cat(rows["g"]),
        force0=torch.cat(rows["f0"]),
        force_ref=torch.cat(rows["fref"]),
        jac=torch.cat(rows["j"], dim=1),
    )
    return model, output_weights(last_readout(model)), linear


def last_layer_features(
    model_path: str | Path, atoms_list: Sequence[Atoms], dtype: str = "float64"
) -> list[tuple[np.ndarray, np.ndarray]]:
    """G per atom (H,) and J (H, N, 3) of unlabelled structures.

    The inputs of experimental design on the last layer (:mod:`alflow.select.design`).
    """
    model, calc = load_mace(model_path, dtype)
    linearised = list(_linearised(model, calc, atoms_list))
    return [
        ((g / len(atoms)).numpy(), jac.numpy())
        for atoms, (_, g, _, jac) in zip(atoms_list, linearised, strict=True)
    ]


def _linearised(
    model: Any, calc: Any, atoms_list: Sequence[Atoms]
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per structure: backbone energy, G (times ``s``), backbone forces and J."""
    readout = last_readout(model)
    scale = energy_scale(model)
    captured: dict[str, torch.Tensor] = {}

    def keep_hidden(module: torch.nn.Module, args: Any, output: torch.Tensor) -> None:
        captured["hidden"] = readout.non_linearity(readout.linear_1(args[0]))

    hook = readout.register_forward_hook(keep_hidden)
    try:
        for atoms in atoms_list:
            data = calc._atoms_to_batch(atoms).to_dict()
            out = model(data, training=False, compute_force=False)
            g = captured["hidden"].sum(dim=0) * scale
            outputs = torch.cat([out["interaction_energy"].reshape(1), g])
            grads = torch.autograd.grad(
                outputs,
                data["positions"],
                grad_outputs=torch.eye(outputs.shape[0], dtype=outputs.dtype),
                is_grads_batched=True,
            )[0]
            yield out["energy"].detach(), g.detach(), -grads[0].detach(), grads[1:].detach()
    finally:
        hook.remove()


def member_predictions(
    linear: LinearisedFrames, offsets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Energies per atom (M, F) and forces (M, A, 3) of members with weight offsets (H, M)."""
    energies = linear.energy0.unsqueeze(0) + (linear.g @ offsets).T
    forces = linear.force0.unsqueeze(0) - torch.einsum("hac,hm->mac", linear.jac, offsets)
    return energies, forces


def gaussian_nll(members: torch.Tensor, reference: torch.Tensor, floor: float) -> torch.Tensor:
    """Mean Gaussian negative log-likelihood of ``reference`` under the members' spread."""
    mean = members.mean(dim=0)
    var = members.var(dim=0, unbiased=False) + floor
    return 0.5 * (torch.log(var) + (reference - mean) ** 2 / var).mean()


def _nll_loss(
    linear: LinearisedFrames, offsets: torch.Tensor, energy_weight: float, forces_weight: float
) -> torch.Tensor:
    energies, forces = member_predictions(linear, offsets)
    return energy_weight * gaussian_nll(
        energies, linear.energy_ref, _ENERGY_FLOOR
    ) + forces_weight * gaussian_nll(forces, linear.force_ref, _FORCE_FLOOR)


def _fit_metrics(
    linear: LinearisedFrames, offsets: torch.Tensor, energy_weight: float, forces_weight: float
) -> dict[str, float]:
    with torch.no_grad():
        energies, forces = member_predictions(linear, offsets)
        return {
            "nll": float(_nll_loss(linear, offsets, energy_weight, forces_weight)),
            "train_rmse_e_per_atom": float(
                (energies.mean(0) - linear.energy_ref).pow(2).mean().sqrt()
            ),
            "train_rmse_f": float((forces.mean(0) - linear.force_ref).pow(2).mean().sqrt()),
        }


def centred_basis(members: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """M centred vectors in M-1 dimensions with unit covariance, shape (M-1, M).

    ``B @ B.T = M I`` and every row sums to zero, so members ``mu + L @ B`` have mean
    ``mu`` and (population) covariance ``L @ L.T``.
    """
    centring = torch.eye(members, dtype=dtype) - 1.0 / members
    u, _, _ = torch.linalg.svd(centring)
    return u[:, : members - 1].T * members**0.5


def fit_members(
    linear: LinearisedFrames,
    w0: torch.Tensor,
    members: int,
    seed: int = 0,
    steps: int = 200,
    energy_weight: float = 1.0,
    forces_weight: float = 1.0,
    method: str = "rigidity",
) -> tuple[torch.Tensor, dict[str, float]]:
    """Member weights (H, M) and fit metrics, by ``method`` (see module docstring).

    ``seed`` and ``steps`` are used by the ``nll`` fit only.
    """
    if members < 2:
        raise ValueError("a shallow ensemble needs at least two members")
    if method == "rigidity":
        offsets = rigidity_offsets(linear, members, energy_weight, forces_weight)
    elif method == "nll":
        offsets = nll_offsets(linear, w0, members, seed, steps, energy_weight, forces_weight)
    else:
        raise ValueError(f"unknown shallow-ensemble fit {method!r}: use 'rigidity' or 'nll'")
    metrics = _fit_metrics(linear, offsets, energy_weight, forces_weight)
    return (w0.unsqueeze(1) + offsets).detach(), metrics


def residual_noise(linear: LinearisedFrames) -> tuple[torch.Tensor, torch.Tensor]:
    """Label noise of energies per atom and force components (eV²/atom², eV²/Å²).

    Each channel's noise is the trained model's own residual variance on its training
    frames (floored, so that a perfect fit keeps the precision finite).
    """
    noise_e = (linear.energy_ref - linear.energy0).pow(2).mean() + _ENERGY_FLOOR
    noise_f = (linear.force_ref - linear.force0).pow(2).mean() + _FORCE_FLOOR
    return noise_e, noise_f


def per_frame_features(
    linear: LinearisedFrames, atom_counts: Sequence[int]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """G per atom (H,) and J (H, N, 3) of each frame in ``linear``.

    The same as :func:`last_layer_features` of those frames, without a second pass.
    """
    jacobians = torch.split(linear.jac, list(atom_counts), dim=1)
    return [(g.numpy(), jac.numpy()) for g, jac in zip(linear.g, jacobians, strict=True)]


def rigidity_offsets(
    linear: LinearisedFrames,
    members: int,
    energy_weight: float = 1.0,
    forces_weight: float = 1.0,
) -> torch.Tensor:
    """Offsets (H, M) around the trained weights along the M-1 widest posterior directions.

    The members' mean is the trained model itself: refitting the last layer on its own
    training frames traded energies for forces (a check on 8 Cu frames: force RMSE 126 → 75
    meV/Å, but energies 2.9 → 206 meV/atom on held-out MD), so only the spread is fitted.
    """
    hidden = linear.g.shape[1]
    design_f = linear.jac.reshape(hidden, -1)  # force change = -design_f.T @ d
    noise_e, noise_f = residual_noise(linear)
    precision = (energy_weight / noise_e) * linear.g.T @ linear.g + (
        forces_weight / noise_f
    ) * design_f @ design_f.T
    covariance = torch.linalg.pinv(precision, rtol=_RCOND, hermitian=True)
    variances, directions = torch.linalg.eigh(covariance)
    rank = min(members - 1, hidden)
    spread = directions[:, -rank:] * variances[-rank:].clamp(min=0).sqrt()
    # scale: the spread's mean force variance on the training frames is the
    # residual's (the campaign's calibration refines it per element on held-out data)
    predicted = torch.einsum("hx,hk->kx", design_f, spread).pow(2).sum(0).mean()
    spread = spread * (noise_f / predicted.clamp(min=1e-300)).sqrt()
    if rank < members - 1:
        spread = torch.cat([spread, spread.new_zeros(hidden, members - 1 - rank)], dim=1)
    return spread @ centred_basis(members, spread.dtype)


def nll_offsets(
    linear: LinearisedFrames,
    w0: torch.Tensor,
    members: int,
    seed: int,
    steps: int = 200,
    energy_weight: float = 1.0,
    forces_weight: float = 1.0,
) -> torch.Tensor:
    """Offsets (H, M) fitted jointly by negative log-likelihood (L-BFGS)."""
    generator = torch.Generator().manual_seed(seed)
    size = float(w0.pow(2).mean().sqrt())
    offsets = torch.randn(w0.shape[0], members, generator=generator, dtype=w0.dtype)
    offsets = (0.1 * size * offsets).requires_grad_(True)
    # L-BFGS with a line search: the members' spread must grow by orders of magnitude
    # for a poor backbone and be resolved finely for a good one; a fixed-step
    # optimiser is unstable at one end or too slow at the other
    optimiser = torch.optim.LBFGS(
        [offsets],
        lr=1.0,
        max_iter=steps,
        history_size=50,
        tolerance_grad=1e-12,
        tolerance_change=1e-14,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = _nll_loss(linear, offsets, energy_weight, forces_weight)
        loss.backward()
        return loss

    optimiser.step(closure)
    return offsets.detach()


def build_shallow_model(
    backbone_path: str | Path,
    frames: Sequence[Frame],
    target: Path,
    members: int,
    seed: int,
    steps: int = 200,
    dtype: str = "float64",
    method: str = "rigidity",
) -> dict[str, float]:
    """Fit members on ``frames`` and save the backbone with its ensemble to ``target``."""
    model, w0, linear = linearise(backbone_path, frames, dtype)
    weights, metrics = fit_members(linear, w0, members, seed, steps, method=method)
    attach_members(model, weights)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    torch.save(model, target)
    return metrics
