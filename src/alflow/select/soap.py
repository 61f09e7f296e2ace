"""SOAP novelty: how unlike the training set a candidate's atomic environments are.

Every atom of a candidate gets a SOAP vector (dscribe), normalised to unit length so
that the distance between two environments, ``sqrt(2 - 2 cos)``, lies in [0, 2]
whatever the system (in float32 it is resolved to about 1e-3). A frame's novelty is
that of its most novel environment: the largest, over its atoms, of the distance to
the nearest training environment.

Memory and time stay bounded for large candidate pools: SOAP is computed in chunks
of frames in float32, and the training side is reduced to at most
``reference_size`` environments by farthest-point sampling (the most distinct ones,
so the nearest-neighbour distance is barely changed).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from alflow.select.fps import farthest_point_sampling

if TYPE_CHECKING:
    from ase import Atoms


class SOAPSettings(BaseModel):
    """SOAP descriptor and novelty settings."""

    model_config = ConfigDict(extra="forbid")

    r_cut: float = Field(4.5, gt=1, description="Cut-off radius (Å).")
    # novelty needs to tell environments apart, not to fit energies: a coarse basis
    # keeps SOAP of 100,000 frames of 64 atoms within minutes on 2 cores
    n_max: int = Field(4, ge=1, le=12, description="Radial basis functions.")
    l_max: int = Field(3, ge=0, le=10, description="Maximum degree of spherical harmonics.")
    sigma: float = Field(0.5, gt=0, description="Width of the atomic Gaussians (Å).")
    reference_size: int = Field(
        2000,
        ge=1,
        description="Training environments kept as the reference (farthest-point "
        "sampled when there are more).",
    )
    chunk_frames: int = Field(512, ge=1, description="Frames per SOAP chunk.")
    n_jobs: int = Field(1, ge=1, description="Processes dscribe uses (cores of the job).")


class SOAPDescriptor:
    """Normalised per-atom SOAP for a fixed list of species.

    Parameters
    ----------
    species
        Atomic numbers or symbols present anywhere in the data.
    settings
        Descriptor settings.
    periodic
        Whether the structures are periodic cells.
    n_jobs
        Processes dscribe may use.
    """

    def __init__(
        self,
        species: Sequence[int | str],
        settings: SOAPSettings | None = None,
        periodic: bool = False,
        n_jobs: int = 1,
    ) -> None:
        from dscribe.descriptors import SOAP

        self.settings = settings or SOAPSettings()
        self.species = sorted({_symbol(s) for s in species})
        self.n_jobs = max(n_jobs, self.settings.n_jobs)
        self._soap = SOAP(
            species=self.species,
            r_cut=self.settings.r_cut,
            n_max=self.settings.n_max,
            l_max=self.settings.l_max,
            sigma=self.settings.sigma,
            periodic=periodic,
            sparse=False,
            dtype="float32",
        )

    @property
    def size(self) -> int:
        """Length of one environment's vector."""
        return int(self._soap.get_number_of_features())

    def environments(self, atoms_list: Sequence[Atoms]) -> Iterator[list[np.ndarray]]:
        """Unit-normalised float32 environments, one (N_i, D) array per frame, in chunks.

        With ``n_jobs > 1`` chunks are computed by worker processes (dscribe's own
        ``n_jobs`` gains little here because its workers restart for every call);
        at most two chunks per worker are in flight, so memory stays bounded.
        """
        step = self.settings.chunk_frames
        chunks = (list(atoms_list[i : i + step]) for i in range(0, len(atoms_list), step))
        if self.n_jobs <= 1 or len(atoms_list) <= step:
            for chunk in chunks:
                yield _soap_chunk(self._soap, chunk)
            return
        import multiprocessing
        from collections import deque
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: the parent may hold torch/OpenMP threads
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(self.n_jobs, mp_context=context) as pool:
            pending: deque[Any] = deque()
            for chunk in chunks:
                pending.append(pool.submit(_soap_chunk, self._soap, chunk))
                if len(pending) >= 2 * self.n_jobs:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def all_environments(self, atoms_list: Sequence[Atoms]) -> np.ndarray:
        """Every environment of every frame stacked, shape (sum N_i, D)."""
        rows = [a for chunk in self.environments(atoms_list) for a in chunk]
        return np.concatenate(rows) if rows else np.zeros((0, self.size), np.float32)


def reduce_reference(environments: np.ndarray, size: int) -> np.ndarray:
    """At most ``size`` environments, chosen by farthest-point sampling."""
    if len(environments) <= size:
        return environments
    picks = farthest_point_sampling(environments, size)
    return environments[picks]


def nearest_distance(environments: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Distance of each (unit) environment to its nearest (unit) reference environment."""
    if len(reference) == 0:
        return np.full(len(environments), 2.0, dtype=np.float32)
    environments = np.asarray(environments, dtype=np.float32)
    reference_t = np.ascontiguousarray(np.asarray(reference, dtype=np.float32).T)
    best = np.empty(len(environments), dtype=np.float32)
    # blocks of rows keep the (rows, R) similarity matrix small enough for the cache
    for start in range(0, len(environments), 2048):
        block = environments[start : start + 2048] @ reference_t
        best[start : start + 2048] = block.max(axis=1)
    return np.sqrt(np.clip(2.0 - 2.0 * best, 0.0, None))


def frame_novelty(frames_environments: Sequence[np.ndarray], reference: np.ndarray) -> np.ndarray:
    """Novelty of each frame: the largest nearest-reference distance of its atoms."""
    if not frames_environments:
        return np.zeros(0)
    sizes = [len(a) for a in frames_environments]
    distances = nearest_distance(np.concatenate(frames_environments), reference)
    ends = np.cumsum(sizes)
    return np.array([distances[e - n : e].max() for e, n in zip(ends, sizes, strict=True)])


class CandidateScores(BaseModel):
    """What selection needs from SOAP, per candidate frame."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    novelty: np.ndarray = Field(description="Frame novelty (F,).")
    vectors: np.ndarray = Field(description="Unit frame vectors (F, D), float32.")
    training_vectors: np.ndarray | None = Field(description="Unit training frame vectors.")


def score_candidates(
    descriptor: SOAPDescriptor, candidates: Sequence[Atoms], training: Sequence[Atoms]
) -> CandidateScores:
    """Novelty and frame vectors of the candidates, streaming over chunks.

    Only one chunk of per-atom environments is in memory at a time; what is kept is
    one float per frame and one frame vector.
    """
    training_envs = [a for chunk in descriptor.environments(training) for a in chunk]
    reference = reduce_reference(
        np.concatenate(training_envs) if training_envs else np.zeros((0, descriptor.size)),
        descriptor.settings.reference_size,
    )
    training_vectors = (
        _unit_rows(np.stack([a.mean(axis=0) for a in training_envs])) if training_envs else None
    )
    novelty, vectors = [], []
    for chunk in descriptor.environments(candidates):
        novelty.append(frame_novelty(chunk, reference))
        vectors.append(_unit_rows(np.stack([a.mean(axis=0) for a in chunk])))
    return CandidateScores(
        novelty=np.concatenate(novelty) if novelty else np.zeros(0),
        vectors=np.concatenate(vectors) if vectors else np.zeros((0, descriptor.size)),
        training_vectors=training_vectors,
    )


def _soap_chunk(soap: Any, chunk: list[Atoms]) -> list[np.ndarray]:
    """Unit-normalised environments of the frames of one chunk (runs in workers too)."""
    out = soap.create(chunk, n_jobs=1)
    arrays = [out] if len(chunk) == 1 else list(out)
    return [_unit_rows(np.asarray(a, dtype=np.float32)) for a in arrays]


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def _symbol(species: int | str) -> str:
    from ase.data import chemical_symbols

    return chemical_symbols[int(species)] if not isinstance(species, str) else species
