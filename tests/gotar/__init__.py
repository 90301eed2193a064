"""Go's archive/tar as a reference reader for the tests (``harness``)."""
