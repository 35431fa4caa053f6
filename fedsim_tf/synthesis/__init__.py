"""Drawing new labelled volumes from trained generative models (the ``sample`` and ``synthesize`` stages)."""
