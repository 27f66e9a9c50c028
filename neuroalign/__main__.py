"""``python -m neuroalign``: the same commands as the ``neuroalign`` CLI."""

from neuroalign.cli import main

if __name__ == "__main__":  # pragma: no cover - exercised through subprocess tests
    main()
