"""The command line: ``debchunk`` and ``container-encapsulate`` (``encapsulate.cli.main``)."""
