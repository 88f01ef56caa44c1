"""Crash-isolated convolution verification suite (``python -m provision.convcheck``).

Shipped to GPU hosts on its own: every module here imports only the standard library, and
the modules that run on the GPU (``execute``, ``hostinfo``, ``worker``) import torch. The
orchestrating modules (``cli``, ``pool``, ``cases``, ``report``, ``workaround``) never import
torch, so the orchestrating process never touches the GPU.
"""

SCHEMA_VERSION = "1.1.0"
