"""The statistics: exact integer and float64 moments, the BatchNorm running simulation, sampling and per-image rows."""
