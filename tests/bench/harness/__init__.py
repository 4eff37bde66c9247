"""Benchmark harness for tests/bench/run: the programs under test (stack), measurements (measure) and one
procedure per row of issue 7's table (rows)."""
