"""Benchmark harness for tests/bench/run: the programs under test (stack), measurements (measure) and one
procedure per row of the benchmark table (rows)."""
