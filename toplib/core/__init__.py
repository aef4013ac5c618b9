"""The ToP method as pure tensor functions (torch only): rank-bin gates, token importance,
the FLOPs model, the Lagrangian constraint, ranking distillation and gate schedules."""
