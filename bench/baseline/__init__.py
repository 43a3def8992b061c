"""The engine as it was before issue #11 (profiles/engine.py and profiles/fold.py at commit 55cb0e3):
the same-run baseline of bench/memory_bench.py. Kept verbatim; not used by the service."""
