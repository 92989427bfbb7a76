"""`sweeps status`: the table shows every count the status rows carry, failed trials included.

No training here: the storage is written directly (failed trials, as a killed or crashed
worker leaves them), so this stays fast."""

from __future__ import annotations

import optuna
import pytest

from sweeps._worker import study_name
from sweeps.config import CONFIG_DIR, load_config
from sweeps.engine import main as engine_main
from sweeps.engine import sweep_status


@pytest.fixture
def storage_with_failures(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(
        f'results_dir = "{tmp_path / "results"}"\n' + (CONFIG_DIR / "tiny.toml").read_text()
    )
    cfg = load_config(path)
    url = f"sqlite:///{tmp_path / 'storage.db'}"
    storage = optuna.storages.RDBStorage(url)
    cell = cfg.cells()[0]
    study = optuna.create_study(study_name=study_name(cfg, cell), storage=storage)
    for _ in range(3):
        study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    return cfg, path, url, cell


def test_status_table_has_a_failed_column(storage_with_failures, capsys):
    cfg, path, url, cell = storage_with_failures
    rows = {r["cell"]: r for r in sweep_status(cfg, url)}
    assert rows[cell.name]["failed"] == 3
    assert engine_main(["status", "--config", str(path), "--storage", url]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    header = lines[0].split()
    assert "failed" in header
    by_cell = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(by_cell) == set(rows)
    # Each row has one value per header column (done/plan is one column), in the same order.
    column = header.index("failed")
    for name, fields in by_cell.items():
        assert len(fields) == len(header)
        assert int(fields[column]) == rows[name]["failed"]
    assert by_cell[cell.name][column] == "3"
