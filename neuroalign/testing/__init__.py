"""Synthetic stores, assertion helpers, a headless-browser page check, a network blocker and
hostile inputs (a crafted pickle, names that try to break out of HTML) for tests
(neuroalign's and users')."""

from neuroalign._lazy import attach

_NAMES = {
    "_browser": ["BrowserCheck", "check_html", "find_chromium"],
    "_hostile": ["HOSTILE_NAMES", "write_crafted_pickle"],
    "_network": ["NetworkBlockedError", "block_network", "empty_model_caches",
                 "place_in_hub_cache"],
    "_stores": ["assert_store_equal", "make_store", "ncsnr_sampling_sd"],
}
__getattr__, __dir__ = attach(__name__, _NAMES)

__all__ = ["make_store", "assert_store_equal", "ncsnr_sampling_sd", "BrowserCheck", "check_html",
           "find_chromium", "block_network", "NetworkBlockedError", "write_crafted_pickle",
           "HOSTILE_NAMES", "empty_model_caches", "place_in_hub_cache"]
