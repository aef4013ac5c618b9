"""Plot helpers."""


def test_log_axis_labels_are_plain_numbers_and_sparse():
    from toplib.viz.plots.speed import _sparse_log_label
    labels = [_sparse_log_label(v) for v in (20, 30, 50, 70, 0.2, 4000)]
    assert labels == ["20", "30", "50", "", "0.2", ""]
