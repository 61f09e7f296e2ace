"""ASE calculators that fail on purpose, for failure-injection tests.

They wrap EMT and decide from a hash of the structure whether (and how) to fail,
so the decision is the same in every process and on every retry. Labels run in a
spawned child process, which imports this module by name (``faulty.Chaos``).
"""

from __future__ import annotations

import hashlib
import time
from typing import ClassVar

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT


def bucket(atoms) -> int:
    """0-99, fixed for a structure."""
    digest = hashlib.sha256(np.round(atoms.positions, 5).tobytes()).hexdigest()
    return int(digest[:8], 16) % 100


class _Wrapped(Calculator):
    implemented_properties: ClassVar[list[str]] = ["energy", "forces", "stress"]

    def _emt(self, atoms, properties):
        inner = EMT()
        inner.calculate(atoms, properties, all_changes)
        self.results = dict(inner.results)


class Chaos(_Wrapped):
    """30% of frames raise, 10% give NaN forces, 10% hang; the rest are EMT."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        b = bucket(self.atoms)
        if b < 30:
            raise RuntimeError(f"SCF did not converge (injected, bucket {b})")
        if b < 40:
            self._emt(self.atoms, properties)
            self.results["forces"] = np.full((len(self.atoms), 3), np.nan)
            return
        if b < 50:
            time.sleep(3600)
        self._emt(self.atoms, properties)


class NeedsPatience(_Wrapped):
    """Fails unless ``max_cycles`` is at least 100: a retry that escalates it succeeds."""

    def __init__(self, max_cycles: int = 10, **kwargs):
        super().__init__(**kwargs)
        self.max_cycles = max_cycles

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if self.max_cycles < 100:
            raise RuntimeError(f"not converged in {self.max_cycles} cycles")
        self._emt(self.atoms, properties)


class Segfault(_Wrapped):
    """Kills its own process, like a crashing DFT code."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        import os
        import signal

        os.kill(os.getpid(), signal.SIGSEGV)
