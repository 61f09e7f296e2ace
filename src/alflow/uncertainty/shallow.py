"""Shallow ensembles: one MACE backbone, M last-layer members.

After Kellner & Ceriotti (2024), the last linear map of MACE's final readout
(hidden features → atomic energy) is replaced by M weight vectors. One backbone
pass gives the hidden features h_i of every atom; member m predicts the atomic
energies ``o_im = h_i · w_m``, and the spread of the members' total energies and of
their forces is the uncertainty. The model integrates the members' mean.

The members live in :class:`ShallowEnsembleReadout`, a drop-in replacement for
mace-torch's ``NonLinearReadoutBlock``; :class:`ShallowEnsembleCalculator` evaluates
a model that carries one. Forces of the members are the derivatives of the member
energy offsets, obtained in a single batched backward pass over the r ≤ M-1
principal directions of the members' spread, and only when an uncertainty is asked
for: a plain MD step costs what one MACE model costs.
Training of the members is in :mod:`alflow.train.shallow`.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from ase.calculators.calculator import all_changes

from alflow.uncertainty.base import UncertaintyCalculator

if TYPE_CHECKING:
    from pathlib import Path

    from ase import Atoms


class ShallowEnsembleReadout(torch.nn.Module):
    """MACE's non-linear readout with M output weight vectors.

    Parameters
    ----------
    readout
        The trained ``NonLinearReadoutBlock`` whose hidden layer is kept.
    weights
        Member weights, shape (hidden, M): member m maps the hidden features of an
        atom to its energy contribution ``h · weights[:, m]``.

    Notes
    -----
    The forward pass returns the members' mean, shape (N, 1), so the surrounding
    MACE model is unchanged; the hidden features of the last call stay in
    ``self.hidden`` (with their autograd graph) for the member spread.
    """

    def __init__(self, readout: torch.nn.Module, weights: torch.Tensor) -> None:
        super().__init__()
        self.linear_1 = readout.linear_1
        self.non_linearity = readout.non_linearity
        self.weights = torch.nn.Parameter(weights.detach().clone(), requires_grad=False)
        self.hidden: torch.Tensor | None = None

    @property
    def members(self) -> int:
        """Number of members M."""
        return int(self.weights.shape[1])

    def hidden_features(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden features h (N, hidden) of node features x."""
        return self.non_linearity(self.linear_1(x))

    def forward(self, x: torch.Tensor, heads: torch.Tensor | None = None) -> torch.Tensor:
        """Mean member output per atom, shape (N, 1)."""
        del heads  # single-head models only (multihead models are cut to one head)
        self.hidden = self.hidden_features(x)
        return self.hidden @ self.weights.mean(dim=1, keepdim=True)


def output_weights(readout: torch.nn.Module) -> torch.Tensor:
    """Effective weight vector (hidden,) of a readout's last linear map.

    e3nn's ``Linear`` normalises its weights internally; feeding it the unit vectors
    gives the map actually applied. It has no bias for scalar outputs, which this
    checks.
    """
    linear = readout.linear_2
    hidden = linear.irreps_in.dim
    dtype = next(linear.parameters()).dtype
    with torch.no_grad():
        zero = linear(torch.zeros(1, hidden, dtype=dtype))
        if float(zero.abs().max()) > 0:
            raise ValueError("the readout's output layer has a bias; not supported")
        return linear(torch.eye(hidden, dtype=dtype))[:, 0].clone()


def last_readout(model: torch.nn.Module) -> torch.nn.Module:
    """The final readout block of a MACE model, checked to be the non-linear kind."""
    readout = model.readouts[-1]
    if not all(hasattr(readout, a) for a in ("linear_1", "non_linearity", "linear_2")):
        if isinstance(readout, ShallowEnsembleReadout):
            return readout
        raise ValueError(
            f"the last readout of this model is a {type(readout).__name__}, not MACE's "
            "NonLinearReadoutBlock: a shallow ensemble cannot be attached"
        )
    return readout


def attach_members(model: torch.nn.Module, weights: torch.Tensor) -> torch.nn.Module:
    """Replace the model's final readout by a shallow ensemble (in place)."""
    readout = last_readout(model)
    model.readouts[-1] = ShallowEnsembleReadout(readout, weights)
    return model


def energy_scale(model: torch.nn.Module) -> float:
    """Factor by which a readout's output is multiplied to give eV (ScaleShiftMACE)."""
    scale_shift = getattr(model, "scale_shift", None)
    if scale_shift is None:
        return 1.0
    return float(torch.as_tensor(scale_shift.scale).reshape(-1)[0])


def spread_basis(weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Principal directions of the members' offsets from their mean.

    With centred weights ``C = U S Vᵀ`` (rank r ≤ M-1), member m's offset is
    ``C[:, m] = sum_k (U_k S_k) V[m, k]``. Returns ``U S`` (H, r) and ``V`` (M, r): the
    r directions need one backward pass each instead of M.
    """
    centred = weights - weights.mean(dim=1, keepdim=True)
    u, s, vh = torch.linalg.svd(centred, full_matrices=False)
    keep = s > s.max() * 1e-10 if s.numel() else s.bool()
    return u[:, keep] * s[keep], vh[keep].T


class ShallowEnsembleCalculator(UncertaintyCalculator):
    """Energy, forces and uncertainty from a MACE model with a shallow ensemble.

    Parameters
    ----------
    model_path
        File written by :func:`alflow.train.shallow.save_shallow_model`.
    scale
        Calibration factor for the force uncertainties.
    device
        Torch device.
    default_dtype
        Precision to evaluate in.

    Notes
    -----
    ``energy_members`` (M,) and ``forces_members`` (M, N, 3) are added to the results
    whenever the uncertainty is computed.
    """

    kind = "shallow"
    implemented_properties: ClassVar[list[str]] = [
        *UncertaintyCalculator.implemented_properties,
    ]

    def __init__(
        self,
        model_path: str | Path,
        scale: float = 1.0,
        device: str = "cpu",
        default_dtype: str = "float64",
        **kwargs: Any,
    ) -> None:
        from mace.calculators import MACECalculator

        super().__init__(scale=scale, **kwargs)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*weights_only.*")
            self._mace = MACECalculator(
                model_paths=str(model_path), device=device, default_dtype=default_dtype
            )
        self.model = self._mace.models[0]
        self.readout = self.model.readouts[-1]
        if not isinstance(self.readout, ShallowEnsembleReadout):
            raise ValueError(f"{model_path} carries no shallow ensemble")
        self._readout_energy_scale = energy_scale(self.model)
        self._directions, self._mixing = spread_basis(self.readout.weights.detach())

    @property
    def size(self) -> int:
        """Number of members M."""
        return self.readout.members

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | None = None,
        system_changes: list[str] = all_changes,
    ) -> None:
        """Mean prediction; member spread only when an uncertainty is requested."""
        super().calculate(atoms, properties, system_changes)
        batch = self._mace._atoms_to_batch(self.atoms)
        data = batch.to_dict()
        want = self.wants_uncertainty(properties)
        periodic = bool(self.atoms.pbc.all())
        out = self.model(data, training=False, compute_force=False, compute_displacement=periodic)
        positions = data["positions"]
        # the stress (for NPT) is the derivative with respect to a symmetric strain
        inputs = [positions, out["displacement"]] if periodic else [positions]
        energy = out["energy"]
        if want:
            # one batched backward pass over the mean energy and the r ≤ M-1
            # principal directions of the members' spread; the members' forces are
            # exact combinations of those r gradients
            components = self._spread_components()
            outputs = torch.cat([out["interaction_energy"].reshape(1), components])
            all_grads = torch.autograd.grad(
                outputs,
                inputs,
                grad_outputs=torch.eye(outputs.shape[0], dtype=outputs.dtype),
                is_grads_batched=True,
            )
            grads = all_grads[0]
            strain_grad = all_grads[1][0] if periodic else None
            forces = -grads[0]
            mixing = self._mixing
            deltas = mixing @ components
            member_forces = forces.unsqueeze(0) - torch.einsum("mk,kac->mac", mixing, grads[1:])
        else:
            all_grads = torch.autograd.grad(out["interaction_energy"].sum(), inputs)
            forces = -all_grads[0]
            strain_grad = all_grads[1] if periodic else None
        e = float(energy.detach().reshape(-1)[0])
        self.results = {
            "energy": e,
            "free_energy": e,
            "forces": forces.detach().cpu().numpy().astype(float),
        }
        if strain_grad is not None:
            from ase.stress import full_3x3_to_voigt_6_stress

            virial = strain_grad.detach().cpu().numpy().reshape(3, 3).astype(float)
            self.results["stress"] = full_3x3_to_voigt_6_stress(virial / self.atoms.get_volume())
        if want:
            member_f = member_forces.detach().cpu().numpy().astype(float)
            member_e = e + deltas.detach().cpu().numpy().astype(float)
            self.results.update(energy_members=member_e, forces_members=member_f)
            per_atom = np.sqrt(member_f.var(axis=0).sum(axis=-1))
            self._store_uncertainty(float(member_e.std()), per_atom)

    def _spread_components(self) -> torch.Tensor:
        """Energy along each principal direction of the members' spread, shape (r,)."""
        hidden = self.readout.hidden
        assert hidden is not None
        return self._readout_energy_scale * (hidden @ self._directions).sum(dim=0)
