"""Pallas kernels, one file per op (installed as ``zoo.kernels``). Kernels import only jax."""
