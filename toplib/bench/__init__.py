"""The latency benchmark: dense vs. masked ToP vs. token-dropping ToP (``toplib bench``)."""
from .models import build_model, dense_copy, prepare_dense, timed_copy, use_onednn
from .profile import SectionTimer, profile_sections
from .report import benchmark_points, format_report, main, register_cli, render, report_tables
from .timing import (
    PAIRS,
    VARIANTS,
    BenchSettings,
    benchmark_inputs,
    cpu_model,
    machine_load,
    make_batches,
    run_benchmark,
)
