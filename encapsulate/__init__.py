"""Stage 3: layers -> reproducible OCI image; transports; the command line.

In: a ``Mapping`` (stage 1) and a plan (stage 2).  Out: an OCI image layout.
The command-line entry points (``debchunk``, ``container-encapsulate``) live in
``encapsulate.cli``.
"""
