"""Test scaffolding shared by the tests and the benchmarks (never shipped): ``asgi`` (the
collector app in process), ``faults`` (fault injection), ``profiles`` (consumers in threads,
topics, tables), ``viewer`` (the viewer app in a thread, contract test data, an SSE client) and
``chromium`` (Debian Chromium's path and flags for Playwright)."""
