"""Real-data layer: NIfTI I/O, site folder layouts, label tables, preprocessing, caching and splits.

Modules are imported individually (``from fedsim_tf.data.site import load_site``); this package
deliberately imports nothing heavy.
"""
