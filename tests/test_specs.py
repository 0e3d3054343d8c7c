import tomllib

import pytest

from ldm_pyro.builders import build_entropy, build_latent_model, build_objective
from ldm_pyro.specs import SCHEMA, available_specs, dump_spec, list_specs, load_spec

GRID = [
    f"{space}-{estimator}-{form}"
    for space in ("plane", "sphere")
    for estimator in ("kde", "knn", "logdet")
    for form in ("ldm", "mi")
]


def test_catalog_has_required_specs():
    names = set(available_specs())
    for name in ["simclr", "simclr-ldm", "vicreg", "vicreg-ldm", *GRID]:
        assert name in names


@pytest.mark.parametrize("name", available_specs())
def test_every_catalog_spec_builds(name):
    spec = load_spec(name)
    assert spec["name"] == name
    assert spec["description"]
    if spec["task"] == "paired":
        build_objective(spec)


def test_list_specs_has_one_line_descriptions():
    for name, description in list_specs():
        assert name
        assert description
        assert "\n" not in description


def test_override_parses_toml_values():
    spec = load_spec(
        "plane-knn-ldm",
        ["entropy.k=5", "training.lr=0.01", "model.stop_gradient=['z_prime']"],
    )
    assert spec["entropy"]["k"] == 5
    assert spec["training"]["lr"] == 0.01
    assert spec["model"]["stop_gradient"] == ["z_prime"]


def test_override_bare_word_is_string():
    spec = load_spec("vicreg-ldm", ["data.name=npz"])
    assert spec["data"]["name"] == "npz"


def test_unknown_spec_lists_catalog():
    with pytest.raises(ValueError, match=r"unknown spec 'nope'.*vicreg-ldm"):
        load_spec("nope")


def test_missing_spec_file():
    with pytest.raises(ValueError, match=r"spec file 'missing/x.toml' not found"):
        load_spec("missing/x.toml")


def test_unknown_field_lists_valid_fields():
    with pytest.raises(
        ValueError,
        match=r"unknown spec field\(s\) \['epoch'\] in "
        r"\[training\]; valid fields: .*'epochs'",
    ):
        load_spec("vicreg-ldm", ["training.epoch=3"])


def test_unknown_top_level_field():
    with pytest.raises(ValueError, match=r"\['colour'\] at the top level"):
        load_spec("vicreg-ldm", ["colour=1"])


def test_unknown_estimator_field_lists_arguments():
    spec = load_spec("plane-knn-ldm", ["entropy.neighbours=4"])
    with pytest.raises(
        ValueError,
        match=r"\['neighbours'\] in \[entropy\]; valid "
        r"fields: .*'k'",
    ):
        build_entropy(spec)


def test_unknown_estimator_name_lists_choices():
    spec = load_spec("plane-knn-ldm", ["entropy.estimator=parzen"])
    with pytest.raises(
        ValueError,
        match=r"unknown entropy.estimator 'parzen'; "
        r"valid choices: .*knn",
    ):
        build_entropy(spec)


def test_unknown_prior_and_kernel():
    with pytest.raises(ValueError, match=r"unknown model.prior 'cauchy'"):
        build_latent_model(load_spec("vicreg-ldm", ["model.prior=cauchy"]))
    with pytest.raises(ValueError, match=r"unknown model.kernel 'box'"):
        build_latent_model(load_spec("vicreg-ldm", ["model.kernel=box"]))


def test_malformed_override():
    with pytest.raises(ValueError, match=r"--set expects 'section.field=value'"):
        load_spec("vicreg-ldm", ["training.lr"])


def test_bad_program_reference():
    spec = load_spec("vicreg-ldm", ['model.program="no_such_module_x:f"'])
    with pytest.raises(ValueError, match=r"cannot import module 'no_such_module_x'"):
        build_latent_model(spec)


def test_dump_round_trips(tmp_path):
    spec = load_spec("simclr")
    path = tmp_path / "simclr.toml"
    path.write_text(dump_spec(spec))
    assert tomllib.loads(path.read_text()) == spec
    assert load_spec(path) == spec


def test_resolved_spec_has_every_schema_section():
    spec = load_spec("vicreg-ldm")
    assert set(spec) == set(SCHEMA)


def test_missing_table_gets_defaults(tmp_path):
    path = tmp_path / "minimal.toml"
    path.write_text('description = "minimal"\n[entropy]\nestimator = "knn"\n')
    spec = load_spec(path)
    assert spec["data"]["augment"] == {}
    assert spec["data"]["name"] == "digits"
    assert tomllib.loads(dump_spec(spec)) == spec
