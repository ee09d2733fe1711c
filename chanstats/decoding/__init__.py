"""Bytes to pixels: one pixel-format table, Pillow's decoder and the JPEG and PNG fast paths."""
