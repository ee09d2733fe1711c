"""The statistics: exact integer and float64 moments, histograms and percentiles, the float quantile
sketch, nodata, the BatchNorm running simulation, sampling and per-image rows."""
