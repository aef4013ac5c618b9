"""Looking at what ToP does: figures (``plots``), kept tokens and ranking agreement
(``analysis``), the sparsity sweep (``sweep``), the token explorer and notebook helpers."""
