"""export: what leaves the process or reasons about hardware: TFLite conversion and verification,
the LiteRT runtime and benchmark harness, hardware profiles, the cost estimator, the partitioner."""
