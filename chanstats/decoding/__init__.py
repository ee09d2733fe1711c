"""Bytes to pixels: image and raster decoders."""
