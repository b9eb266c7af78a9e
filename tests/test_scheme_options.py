"""Options of sharing schemes, and of every `type:` block, validate like the rest of the file.

Constraints written ``Annotated[int, Field(ge=1)]`` read as such, ``true`` is not a number, an int
takes ``5e5`` but not ``2.5``, ``Iterable[int]`` is checked element by element, errors name the
full option path (also inside a scheme built by another scheme), a value the constructor itself
refuses is an OptionError naming its block, and ``sharing: ~`` is the arch's default scheme.
"""

from __future__ import annotations

from typing import Annotated

import pytest
import torch

from restore.api import Field, OptionError, build_network, build_sharing, count_parameters, option_path
from restore.build import build_optimizer, build_scheduler
from restore.cli import main
from restore.validation import call_with_options, check_options
from tests.conftest import tiny_sisr_options


def knobs(count: Annotated[int, Field(ge=1)] = 2, rate: Annotated[float, Field(gt=0)] = 1.0,
          steps: list[int] = (), flag: bool = False) -> None:
    """A target with the annotations plugin options use."""


@pytest.mark.parametrize("options, message", [
    ({"count": 0}, "blk.count: expected int >= 1, got 0 (input should be greater than or equal to 1)."),
    ({"rate": 0}, "blk.rate: expected float > 0, got 0 (input should be greater than 0)."),
    ({"count": True}, "blk.count: expected int >= 1, got True (true/false is not a number)."),
    ({"rate": False}, "blk.rate: expected float > 0, got False (true/false is not a number)."),
    ({"count": 2.5}, "blk.count: expected int >= 1, got 2.5 (input should be a valid integer, got a number with a "
                     "fractional part)."),
    ({"steps": [1, "a"]}, "blk.steps.1: input should be a valid integer, unable to parse string as an integer, "
                          "got 'a' (blk.steps is list[int])."),
])
def test_bad_values_are_refused_with_a_readable_message(options, message):
    with pytest.raises(OptionError) as caught:
        check_options(knobs, options, "blk")
    assert str(caught.value) == message


def test_integral_floats_count_as_ints_and_text_numbers_are_read():
    # `total_iter: 5e5` is common in BasicSR files, and `--set` values may arrive as text
    assert check_options(knobs, {"count": 5e5, "rate": "2e-4", "steps": [1.0, "3"], "flag": 1}, "blk") == {
        "count": 500_000, "rate": 2e-4, "steps": [1, 3], "flag": True}


def test_a_scheme_option_error_names_network_g_sharing_and_the_key():
    drrn = {"type": "DRRN", "num_units": 2, "num_features": 8}
    with pytest.raises(OptionError, match=r"^network_g\.sharing\.num_partial_filters: expected int \| None, got True"):
        build_network({**drrn, "sharing": {"type": "partial_filter", "num_partial_filters": True}})
    with pytest.raises(OptionError, match=r"^network_g\.sharing\.ratio: must be positive"):
        build_network({**drrn, "sharing": {"type": "partial_filter", "ratio": -1}})
    with pytest.raises(OptionError, match=r"^network_g\.sharing\.partiton: unknown option.*Did you mean 'partition'"):
        build_network({**drrn, "sharing": {"type": "partial_filter", "partiton": "tap"}})


class Outer(torch.nn.Module):
    """A scheme-like block that builds a scheme from one of its own options (as a composition does)."""

    def __init__(self, rules: list[dict]) -> None:
        super().__init__()
        self.inner = [build_sharing(rule["scheme"], path=option_path(f"rules.{i}.scheme")) for i, rule in
                      enumerate(rules)]


def test_a_scheme_built_inside_another_names_its_full_path():
    rules = [{"scheme": "recursive"}, {"scheme": {"type": "partial_filter", "num_partial_filters": 0}}]
    with pytest.raises(OptionError, match=r"^network_g\.sharing\.rules\.1\.scheme\.num_partial_filters: must be >= 1"):
        call_with_options(Outer, {"rules": rules}, "network_g.sharing")
    with pytest.raises(OptionError, match=r"^network_g\.sharing\.rules\.0\.scheme\.type: Unknown sharing layer"):
        call_with_options(Outer, {"rules": [{"scheme": "recursve"}]}, "network_g.sharing")


def test_null_sharing_is_the_arch_default_scheme_not_none():
    # DRRN B1U9 is weight-tied (recursive): 297,345 parameters; unshared it would be 7,965,057
    assert count_parameters(build_network({"type": "DRRN", "sharing": None})) == 297_345
    assert count_parameters(build_network({"type": "DRRN", "sharing": "none"})) == 7_965_057
    ps = build_network({"type": "DRRN_PS", "num_units": 2, "num_features": 8, "sharing": None})
    assert ps.sharing.describe()["type"] == "partial_filter"  # DRRN_PS's own default


def test_values_the_constructor_refuses_become_option_errors_naming_the_block():
    params = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(OptionError, match=r"^train\.optim_g: Adam refused its options \(lr=.*\): Invalid learning"):
        build_optimizer({"type": "Adam", "lr": -1}, params)
    with pytest.raises(OptionError, match=r"^train\.optim_g\.lr: .*finite number"):  # refused before Adam sees it
        build_optimizer({"type": "Adam", "lr": float("nan")}, params)
    optimizer = build_optimizer({"type": "Adam", "lr": 1e-3}, params)
    with pytest.raises(OptionError, match=r"^train\.scheduler\.milestones\.0: input should be a valid integer"):
        build_scheduler({"type": "MultiStepLR", "milestones": ["a"]}, optimizer)
    with pytest.raises(OptionError, match=r"^train\.scheduler\.gamma: expected float > 0, got True"):
        build_scheduler({"type": "MultiStepLR", "milestones": [2], "gamma": True}, optimizer)
    scheduler = build_scheduler({"type": "MultiStepLR", "milestones": [5e5]}, optimizer)
    assert list(scheduler.milestones) == [500_000]


@pytest.mark.parametrize("override, message", [
    ("train.optim_g.lr=-1", "train.optim_g: Adam refused its options (lr=-1.0): Invalid learning rate: -1.0"),
    ("train.optim_g.lr=.nan", "train.optim_g.lr: expected float | Tensor, got nan (input should be a finite number)"),
    ("train.scheduler.milestones=[a]", "train.scheduler.milestones.0: input should be a valid integer"),
    ("network_g.sharing={type: partial_filter, num_partial_filters: 0}",
     "network_g.sharing.num_partial_filters: must be >= 1, got 0."),
])
def test_the_cli_reports_bad_block_values_in_one_paragraph(tmp_path, write_options, capsys, override, message):
    options = tiny_sisr_options(tmp_path, network_g={"type": "DRRN", "num_units": 2, "num_features": 8})
    assert main(["train", "-opt", str(write_options(options)), "--dry-run", "--set", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert message in " ".join(err.split())
    assert not (tmp_path / "experiments").exists()
