"""Config validation: every bad input gives file, line, field and advice; exit code 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from alflow.cli import main
from alflow.config_loader import ConfigError, load_campaign

DATA = Path(__file__).resolve().parents[1] / "configs" / "data"

GOOD = """\
name: test
system:
  structures: ethanol.xyz
data:
  bootstrap: {n_frames: 4}
label:
  calculator: pyscf
  xc: PBE
  basis: def2-SVP
train:
  committee: 2
  epochs: 5
select:
  lo: 0.05
  hi: 0.5
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "campaign.yaml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list:
    with pytest.raises(ConfigError) as err:
        load_campaign(write(tmp_path, text))
    return err.value.problems


def test_good_config_loads_with_paths_resolved(tmp_path, ethanol_xyz):
    campaign = load_campaign(write(tmp_path, GOOD))
    assert campaign.system.structures == [ethanol_xyz.resolve()]
    assert campaign.label.calculator == "pyscf"
    assert campaign.train.committee == 2
    assert campaign.stop.max_iterations == 5  # default
    assert campaign.campaign_dir(cwd=Path("/somewhere")) == Path("/somewhere/runs/test")
    relative = load_campaign(write(tmp_path, GOOD + "output: results/here\n"))
    assert relative.campaign_dir() == tmp_path / "results" / "here"


def test_unknown_key_names_line_and_suggests_spelling(tmp_path, ethanol_xyz):
    text = GOOD.replace("  epochs: 5", "  epoch: 5")
    [problem] = problems(tmp_path, text)
    assert problem.line == 12
    assert problem.field == "train.epoch"
    assert "unknown key 'epoch'" in problem.message
    assert "did you mean 'epochs'" in problem.message


def test_unknown_key_inside_labeller_section(tmp_path, ethanol_xyz):
    [problem] = problems(tmp_path, GOOD.replace("  basis: def2-SVP", "  basis_set: x"))
    assert problem.line == 9
    assert problem.field == "label.basis_set"
    assert "did you mean 'basis'" in problem.message


def test_wrong_type_reports_value(tmp_path, ethanol_xyz):
    [problem] = problems(tmp_path, GOOD.replace("epochs: 5", "epochs: ten"))
    assert problem.line == 12
    assert problem.field == "train.epochs"
    assert "integer" in problem.message and "'ten'" in problem.message


def test_lo_above_hi_is_rejected_with_the_rule(tmp_path, ethanol_xyz):
    [problem] = problems(tmp_path, GOOD.replace("lo: 0.05", "lo: 0.9"))
    assert problem.field == "select"
    assert problem.line == 13
    assert "lo (0.9) must be smaller than hi (0.5)" in problem.message


def test_energy_threshold_is_off_by_default_and_positive(tmp_path, ethanol_xyz):
    assert load_campaign(write(tmp_path, GOOD)).select.energy_lo is None
    text = GOOD.replace("hi: 0.5", "hi: 0.5\n  energy_lo: 0.004")
    assert load_campaign(write(tmp_path, text)).select.energy_lo == 0.004
    [problem] = problems(tmp_path, GOOD.replace("hi: 0.5", "hi: 0.5\n  energy_lo: 0"))
    assert problem.field == "select.energy_lo"
    assert problem.line == 16
    assert "greater than 0" in problem.message


def test_missing_file_says_where_it_looked(tmp_path):
    [problem] = problems(tmp_path, GOOD)  # no ethanol.xyz written
    assert problem.field == "system.structures[0]"
    assert problem.line == 3
    assert "not found" in problem.message and str(tmp_path) in problem.message


def test_several_problems_are_all_reported(tmp_path, ethanol_xyz):
    text = GOOD.replace("epochs: 5", "epochs: -1").replace("committee: 2", "committee: 1")
    found = problems(tmp_path, text)
    assert {p.field for p in found} == {"train.epochs", "train.committee"}


def test_invalid_yaml_gives_line(tmp_path, ethanol_xyz):
    [problem] = problems(tmp_path, GOOD.replace("  xc: PBE", "  xc: [PBE"))
    assert "invalid YAML" in problem.message
    assert problem.line is not None and 8 <= problem.line <= 10


def test_unknown_labeller_lists_choices(tmp_path, ethanol_xyz):
    [problem] = problems(tmp_path, GOOD.replace("calculator: pyscf", "calculator: vasp"))
    assert problem.field == "label"
    assert "'vasp'" in problem.message and "pyscf" in problem.message


def test_missing_required_section(tmp_path, ethanol_xyz):
    text = GOOD.replace("data:\n  bootstrap: {n_frames: 4}\n", "")
    [problem] = problems(tmp_path, text)
    assert problem.field == "data" and "missing" in problem.message


def test_no_starting_data(tmp_path, ethanol_xyz):
    [problem] = problems(tmp_path, GOOD.replace("  bootstrap: {n_frames: 4}", "  initial: null"))
    assert problem.field == "data"
    assert "bootstrap" in problem.message


def test_force_rmse_target_needs_validation_frames(tmp_path, ethanol_xyz):
    [problem] = problems(tmp_path, GOOD + "stop:\n  force_rmse: 0.05\n")
    assert problem.field == "stop.force_rmse"
    assert problem.line == 17
    assert "data.validation" in problem.message


def test_unlabelled_validation_file_is_refused(tmp_path, ethanol_xyz):
    text = GOOD.replace(
        "  bootstrap: {n_frames: 4}", "  bootstrap: {n_frames: 4}\n  validation: ethanol.xyz"
    )
    [problem] = problems(tmp_path, text)
    assert problem.field == "data.validation"
    assert "lack energy or forces" in problem.message


def test_emt_refuses_elements_it_cannot_treat(tmp_path, ethanol_xyz):
    text = GOOD.replace("  calculator: pyscf\n  xc: PBE\n  basis: def2-SVP", "  calculator: emt")
    from ase.build import molecule
    from ase.io import write as ase_write

    ase_write(ethanol_xyz, molecule("CH3SiH3"))
    [problem] = problems(tmp_path, text)
    assert problem.field == "label.calculator"
    assert "Si" in problem.message


def test_pyscf_refuses_periodic_structures(tmp_path):
    from ase.build import bulk
    from ase.io import write as ase_write

    ase_write(tmp_path / "ethanol.xyz", bulk("Si"))
    [problem] = problems(tmp_path, GOOD)
    assert problem.field == "label.calculator"
    assert "periodic" in problem.message


def test_cli_validate_exit_codes_and_no_traceback(tmp_path, ethanol_xyz, capsys):
    good = write(tmp_path, GOOD)
    assert main(["validate", str(good)]) == 0
    assert "OK" in capsys.readouterr().out
    bad = write(tmp_path, GOOD.replace("epochs: 5", "epochs: ten"))
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:12: train.epochs:" in err
    assert "Traceback" not in err
    assert main(["run", str(bad)]) == 2
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2


def test_schema_is_json_with_sections(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert {"system", "data", "label", "train", "explore", "select", "stop"} <= set(
        schema["properties"]
    )
    assert schema["additionalProperties"] is False


def test_shipped_configs_are_valid():
    root = Path(__file__).resolve().parents[1] / "configs"
    for path in root.glob("*.yaml"):
        load_campaign(path)


def test_status_and_export_refuse_folders_that_are_not_campaigns(tmp_path, capsys):
    assert main(["status", str(tmp_path)]) == 2
    assert main(["export", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not an alflow campaign folder" in err and "Traceback" not in err


def test_model_and_estimator_are_one_field_each(tmp_path, ethanol_xyz):
    text = GOOD.replace("  committee: 2\n", "  uncertainty: shallow\n")
    campaign = load_campaign(write(tmp_path, text))
    assert (campaign.train.model, campaign.train.uncertainty) == ("mace", "shallow")
    assert campaign.train.shallow_fit == "rigidity"
    [problem] = problems(tmp_path, text.replace("shallow\n", "shallow\n  shallow_fit: llpr\n"))
    assert problem.field == "train.shallow_fit" and problem.line == 12
    assert "'rigidity' or 'nll'" in problem.message
    gap = GOOD.replace("train:\n  committee: 2\n  epochs: 5\n", "train:\n  model: gap\n")
    gap = gap.replace("label:", "  validation: held.xyz\nlabel:")
    shutil.copy(DATA / "ethanol_rmd17_test.xyz", tmp_path / "held.xyz")
    campaign = load_campaign(write(tmp_path, gap))
    assert (campaign.train.model, campaign.train.uncertainty) == ("gap", "variance")


def test_gap_problems_name_the_gap_section(tmp_path, ethanol_xyz):
    text = GOOD.replace(
        "train:\n  committee: 2\n  epochs: 5\n", "train:\n  model: gap\n  soap_cutof: 4\n"
    )
    [problem] = problems(tmp_path, text)
    assert problem.field == "train.soap_cutof" and problem.line == 12
    assert "did you mean 'soap_cutoff'" in problem.message
    # GAP's variance needs held-out frames to become a force uncertainty
    text = GOOD.replace("train:\n  committee: 2\n  epochs: 5\n", "train:\n  model: gap\n")
    [problem] = problems(tmp_path, text)
    assert problem.field == "train.model" and "data.validation" in problem.message
    text = GOOD.replace("  committee: 2\n", "  uncertainty: variance\n")
    [problem] = problems(tmp_path, text)
    assert problem.field == "train.uncertainty" and "'committee' or 'shallow'" in problem.message


def test_foundation_model_problems_are_found_before_training(tmp_path, ethanol_xyz):
    import torch

    torch.save({"weights": torch.zeros(2)}, tmp_path / "not_mace.model")
    base = GOOD.replace("  epochs: 5\n", "  epochs: 5\n  foundation:\n    path: PATH\nEXTRA")

    def config(path: str, extra: str = "") -> str:
        return base.replace("PATH", path).replace("EXTRA", extra)

    [problem] = problems(tmp_path, config("missing.model"))
    assert problem.field == "train.foundation.path" and problem.line == 14
    assert "not found" in problem.message
    [problem] = problems(tmp_path, config("not_mace.model"))
    assert problem.field == "train.foundation.path" and "not a MACE model" in problem.message
    [problem] = problems(tmp_path, config("not_mace.model", "    mode: multihead\n"))
    assert problem.field == "train.foundation" and "replay_file" in problem.message


def test_foundation_must_cover_the_elements(tmp_path, ethanol_xyz, copper_files):
    from alflow.config import MACEConfig
    from alflow.frames import read_frames
    from alflow.train.mace import train_mace

    record = train_mace(
        read_frames(DATA / "ethanol_rmd17_test.xyz")[:6],
        MACEConfig(num_channels=4, epochs=1, batch_size=2),
        tmp_path,
        "chon",
        seed=0,
    )
    text = GOOD.replace("  epochs: 5\n", f"  epochs: 5\n  foundation:\n    path: {record.path}\n")
    text = text.replace("ethanol.xyz", str(copper_files["structure"]))
    text = text.replace("calculator: pyscf\n  xc: PBE\n  basis: def2-SVP", "calculator: emt")
    [problem] = problems(tmp_path, text)
    assert problem.field == "train.foundation.path" and problem.line == 12
    assert "contain Cu, which the foundation model" in problem.message
    assert "knows C, H, O" in problem.message or "knows H, C, O" in problem.message


def test_biased_md_needs_mace_members_and_nvt(tmp_path, ethanol_xyz):
    biased = GOOD + "explore:\n  bias_depth: 0.01\n  bias_width: 0.004\n"
    campaign = load_campaign(write(tmp_path, biased))
    assert (campaign.explore.bias_depth, campaign.explore.bias_width) == (0.01, 0.004)
    shallow = biased.replace("  committee: 2\n", "  uncertainty: shallow\n")
    assert load_campaign(write(tmp_path, shallow)).train.uncertainty == "shallow"
    gap = biased.replace("train:\n  committee: 2\n  epochs: 5\n", "train:\n  model: gap\n")
    gap = gap.replace("label:", "  validation: held.xyz\nlabel:")
    shutil.copy(DATA / "ethanol_rmd17_test.xyz", tmp_path / "held.xyz")
    [problem] = problems(tmp_path, gap)
    assert problem.field == "explore.bias_depth" and problem.line == 17
    assert "needs a MACE committee or shallow ensemble" in problem.message
    assert "'gap' with 'variance' uncertainty" in problem.message
    [problem] = problems(tmp_path, biased + "  ensemble: npt-mtk\n")
    assert problem.field == "explore" and "ensemble: nvt" in problem.message
