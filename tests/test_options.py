"""Option files: BasicSR schema, inheritance, --set overrides, and errors that name the key path."""

from __future__ import annotations

import pytest
import yaml

from restore.errors import OptionError
from restore.options import apply_overrides, check_registered_blocks, dump_options, load_options, parse_yaml
from tests.conftest import tiny_sisr_options


def test_basicsr_style_file_loads_with_defaults(tmp_path, write_options):
    options = load_options(write_options(tiny_sisr_options(tmp_path)))
    assert options.train.total_iter == 20
    assert options.datasets["train"].batch_size_per_gpu == 4
    assert options.datasets["train"].dataset_kwargs()["gt_size"] == 64
    assert options.val.quantize == "round" and options.logger.keep_checkpoints == 3
    check_registered_blocks(options)


def test_scientific_notation_without_a_dot_is_a_float():
    # PyYAML reads `2e-4` as a string (YAML 1.1); BasicSR files need `!!float`. We do not.
    assert parse_yaml("lr: 2e-4") == {"lr": 2e-4}
    assert parse_yaml("lr: !!float 2e-4") == {"lr": 2e-4}


def test_duplicate_key_is_an_error_with_its_line(tmp_path):
    path = tmp_path / "dup.yml"
    path.write_text("name: a\nscale: 2\nname: b\n")
    with pytest.raises(OptionError, match="duplicate key 'name' \\(first at line 1\\)"):
        load_options(path)


def test_yaml_never_constructs_python_objects(tmp_path):
    path = tmp_path / "evil.yml"
    path.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(OptionError, match="invalid YAML"):
        load_options(path)


def test_base_file_is_inherited_and_overridden(tmp_path, write_options):
    write_options(tiny_sisr_options(tmp_path), "full.yml")
    child = write_options({"base": "full.yml", "name": "child",
                           "train": {"total_iter": 5, "optim_g": {"lr": 5e-4}}}, "child.yml")
    options = load_options(child)
    assert options.name == "child" and options.train.total_iter == 5
    assert options.train.optim_g == {"type": "Adam", "lr": 5e-4}  # merged key by key
    assert options.network_g["type"] == "MSRResNet"  # inherited


def test_inheritance_cycle_is_reported(tmp_path, write_options):
    write_options({"base": "b.yml", "name": "a"}, "a.yml")
    write_options({"base": "a.yml", "name": "b"}, "b.yml")
    with pytest.raises(OptionError, match="cycle"):
        load_options(tmp_path / "a.yml")


def test_set_overrides_parse_values_as_yaml(tmp_path, write_options):
    path = write_options(tiny_sisr_options(tmp_path))
    options = load_options(path, ["train.total_iter=200", "datasets.train.scales=[2, 3]", "val.tile=~",
                                  "network_g.num_block=3"])
    assert options.train.total_iter == 200
    assert options.datasets["train"].dataset_kwargs()["scales"] == [2, 3]
    assert options.network_g["num_block"] == 3


def test_set_override_needs_key_and_value():
    with pytest.raises(OptionError, match="expected key.path=value"):
        apply_overrides({}, ["train.total_iter"])


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("logger.print_frq=10", "logger.print_frq: unknown key. Did you mean 'print_freq'?"),
        ("train.totl_iter=10", "train.totl_iter: unknown key. Did you mean 'total_iter'?"),
        ("datasets.train.gt_sise=64", "datasets.train.gt_sise: unknown option for PairedImageDataset. "
                                      "Did you mean 'gt_size'?"),
        ("datasets.train.batch_size_per_gp=4", "Did you mean 'batch_size_per_gpu'?"),
        ("network_g.num_feet=8", "network_g.num_feet: unknown option for MSRResNet. Did you mean 'num_feat'?"),
        ("train.optim_g.lrr=1", "train.optim_g.lrr: unknown option for Adam. Did you mean 'lr'?"),
        ("train.pixel_opt.los_weight=1", "Did you mean 'loss_weight'?"),
        ("train.total_iter=many", "train.total_iter: Input should be a valid integer"),
        ("val.quantize=floor", "val.quantize: Input should be 'round' or 'truncate'"),
        ("task.type=sisrr", "task.type: Unknown task 'sisrr'. Did you mean 'sisr'?"),
        ("network_g.type=MSRResnet2", "network_g.type: Unknown arch 'MSRResnet2'. Did you mean 'MSRResNet'?"),
        ("datasets.trian={}", "dataset key 'trian' must be train, val"),
        ("network_g.upscale=4", "network_g.upscale is 4 but the task's scale is 2"),
    ],
)
def test_wrong_option_names_its_path_and_suggests_the_right_one(tmp_path, write_options, override, expected):
    path = write_options(tiny_sisr_options(tmp_path))
    with pytest.raises(OptionError) as err:
        check_registered_blocks(load_options(path, [override]))
    assert expected in str(err.value)


def test_missing_required_key_is_named(tmp_path, write_options):
    data = tiny_sisr_options(tmp_path)
    del data["network_g"]
    with pytest.raises(OptionError, match="network_g: missing required key"):
        load_options(write_options(data))


def test_resolved_options_round_trip(tmp_path, write_options):
    options = load_options(write_options(tiny_sisr_options(tmp_path)), ["train.total_iter=7"])
    saved = tmp_path / "saved.yml"
    saved.write_text(dump_options(options))
    again = load_options(saved)
    assert again == options
    assert yaml.safe_load(saved.read_text())["train"]["total_iter"] == 7
