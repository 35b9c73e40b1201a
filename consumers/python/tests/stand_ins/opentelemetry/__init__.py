"""A stand-in for the ``opentelemetry`` package of opentelemetry-api, which cannot be installed
here (Debian has no python3-opentelemetry and PyPI cannot be reached): only what the library
calls, ``opentelemetry.propagate.inject``. test_trace_context.py puts it on ``sys.path`` for the
tests of the OpenTelemetry path and nowhere else."""
