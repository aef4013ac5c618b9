"""Looking at what ToP does: figures (``plots``), kept tokens and ranking agreement
(``analysis``), the sparsity sweep with its baselines (``sweep``), the token explorer
(``explorer``) and what the notebooks share (``notebook``)."""
