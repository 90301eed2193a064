"""``python -m encapsulate.cli``: the ``debchunk`` command."""

import sys

from .main import debchunk_main

sys.exit(debchunk_main())
