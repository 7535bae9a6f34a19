import pytest

from tests.sweep.report.synthetic import make_ablation_sweep, make_table1_sweep


@pytest.fixture
def sweeps(tmp_path):
    return make_table1_sweep(tmp_path), make_ablation_sweep(tmp_path)
