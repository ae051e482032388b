"""The benchmark suite: `python -m bench` measures and writes docs/benchmarks.*."""
