"""Report plots: metric names as the tables spell them, and an empty panel that says why."""

from cycleseg.sweep.report import plots, tables
from cycleseg.sweep.report.derive import metric_label, prepare
from cycleseg.sweep.report.paper import Paper
from cycleseg.sweep.results.parquet import read_sweeps
from tests.sweep.report.synthetic import write_trial


def test_metric_labels_are_spelled_as_in_the_tables():
    assert metric_label("test_miou") == "test mIoU" and metric_label("val_miou") == "val mIoU"


def test_an_ablation_without_proposed_trials_says_no_data_instead_of_a_blank_panel(tmp_path, monkeypatch):
    d = tmp_path / "s"
    for seed in range(2):
        write_trial(d, f"v{seed}", method="cyclegan", fraction=0.2, seed=seed, value=0.3, variant="no_label_cycle",
                    lambda_2=0.0)
        write_trial(d, f"p{seed}", method="cyclegan", fraction=0.2, seed=seed, value=None, status="failed",
                    error="OOM", variant="proposed")
    t2 = tables.table2(prepare(read_sweeps([d]).trials, "test_miou"), Paper.load(), "t")
    said = []
    monkeypatch.setattr(plots, "_no_data", lambda ax, why: said.append(why))
    path = plots.plot_ablation(t2, "voc", 0.2, "test_miou", tmp_path / "ablation.png")
    assert path.is_file()
    assert said == ["no completed `proposed` (plain cyclegan) trial to pair the variants with"]
