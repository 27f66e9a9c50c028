"""Synthetic stores, assertion helpers and a headless-browser page check for tests
(neuroalign's and users')."""

from neuroalign.testing._browser import BrowserCheck, check_html, find_chromium
from neuroalign.testing._stores import assert_store_equal, make_store, ncsnr_sampling_sd

__all__ = ["make_store", "assert_store_equal", "ncsnr_sampling_sd", "BrowserCheck", "check_html",
           "find_chromium"]
