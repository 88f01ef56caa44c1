"""rocm-provision: bring a lab of AMD GPU hosts from ROCm 5.2 to a verified ROCm 7.0 state.

Keep this module import-free: `provision.convcheck` is shipped to GPU hosts on its own and
imports this package with nothing but the standard library and torch available.
"""

__version__ = "0.1.0"
