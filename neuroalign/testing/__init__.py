"""Synthetic stores and assertion helpers for tests (neuroalign's and users')."""

from neuroalign.testing._stores import assert_store_equal, make_store, ncsnr_sampling_sd

__all__ = ["make_store", "assert_store_equal", "ncsnr_sampling_sd"]
