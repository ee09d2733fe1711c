"""Bytes to pixels: one pixel-format table, Pillow's decoder, the JPEG and PNG fast paths, and TIFF rasters."""
