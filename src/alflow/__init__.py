"""alflow: active learning of machine-learned interatomic potentials with jobflow."""

from __future__ import annotations

__version__ = "0.1.0"
