"""The command line: ``debchunk`` and ``container-encapsulate``."""

from .main import container_encapsulate_main, debchunk_main

__all__ = ["container_encapsulate_main", "debchunk_main"]
