"""Weights files record which package provided each registered name they use, and refuse to load
without it. (The end-to-end version, with a real package trained and then removed, is in
test_plugin_packages.py.)"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from restore.checkpoint import load_weights, provenance, save_weights, used_names
from restore.errors import CheckpointError

COMPOSED = {"type": "UPS", "sharing": {"type": "compose", "default": "none", "rules": [
    {"slots": "projection", "scheme": "unified_projection"},
    {"slots": "*.feature", "scheme": {"type": "recursive"}},
]}}


def test_every_scheme_of_a_nested_sharing_option_is_found_and_slot_patterns_are_not():
    assert used_names(COMPOSED, {"type": "sisr", "scale": 2}) == [
        ("arch", "UPS"), ("sharing", "compose"), ("sharing", "none"), ("sharing", "unified_projection"),
        ("sharing", "recursive"), ("task", "sisr")]


def test_provenance_names_the_package_of_each_registered_name_and_skips_unregistered_ones():
    recorded = provenance({**COMPOSED, "sharing": {**COMPOSED["sharing"], "extra": {"type": "no_such_scheme"}}},
                          {"type": "sisr"})
    assert recorded.items() >= {"arch:UPS": "restore 0.1.0", "sharing:none": "restore 0.1.0",
                                "sharing:unified_projection": "restore 0.1.0", "sharing:recursive": "restore 0.1.0",
                                "task:sisr": "restore 0.1.0"}.items()
    assert "sharing:no_such_scheme" not in recorded
    assert recorded.get("sharing:compose", "restore 0.1.0") == "restore 0.1.0"  # once the core registers it


def test_saved_weights_carry_their_provenance(tmp_path):
    network = {"type": "DRRN", "num_units": 1, "num_features": 8, "sharing": "recursive"}
    path = save_weights(tmp_path / "w.safetensors", {"w": torch.zeros(2)}, network=network,
                        task={"type": "sisr", "scale": 2})
    _, meta = load_weights(path)
    assert meta["provenance"] == {"arch:DRRN": "restore 0.1.0", "sharing:recursive": "restore 0.1.0",
                                  "task:sisr": "restore 0.1.0"}


def _written_by_someone_else(path, provenance_text: str) -> None:
    save_file({"w": torch.zeros(2)}, str(path), metadata={
        "format": "restore.weights/1", "restore.network": json.dumps({"type": "DRRN", "sharing": "templates"}),
        "restore.provenance": provenance_text})


def test_weights_needing_a_missing_package_are_refused_naming_it_and_the_file(tmp_path):
    path = tmp_path / "templated.safetensors"
    _written_by_someone_else(path, json.dumps({"arch:DRRN": "restore 0.1.0",
                                               "sharing:templates": "restore-templates 0.2.0"}))
    with pytest.raises(CheckpointError) as err:
        load_weights(path)
    message = str(err.value)
    assert message.startswith(f"{path}: these weights need sharing layer 'templates' from restore-templates 0.2.0")
    assert 'pip install "restore-templates==0.2.0"' in message and "DRRN" not in message


def test_an_edited_provenance_entry_is_a_clear_error(tmp_path):
    path = tmp_path / "edited.safetensors"
    _written_by_someone_else(path, '["not", "a", "mapping"]')
    with pytest.raises(CheckpointError, match="'restore.provenance' is not a JSON mapping of names to packages"):
        load_weights(path)
