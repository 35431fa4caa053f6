"""The paper's experiments in one command (``--stage=experiment``): cell planning, the cell ledger, the
protocol runner and the reports."""
