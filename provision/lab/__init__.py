"""The container lab: Debian 12 podman hosts on loopback SSH, a signed repo.radeon.com-shaped mirror,
simulated GPUs and seeded ROCm 5.2 before-states. Driven by `provision lab up|status|down`."""
