"""Configuration loading: layering, overrides, and errors that name the file, key and rule."""

from __future__ import annotations

import shutil

import pytest
import yaml

from segmentation.config import ConfigError, load_settings


def test_local_defaults_load_with_base_first(conf_dir):
    settings = load_settings([conf_dir / "local.yaml"])
    assert settings.spark.master == "local[*]"
    assert settings.outputs.path == "lake/output"
    assert settings.rfm.method == "quantile"
    assert list(settings.segments.rule_sets)[:3] == ["rfm_segment", "lifecycle_stage", "membership_tier"]
    names = {r.name: r.display_name_zh for r in settings.segments.rule_sets["rfm_segment"].rules}
    assert names["champions"] == "高价值客户"


def test_later_files_and_overrides_win(conf_dir, tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("rfm:\n  bins: 3\n  method: equal_width\n", encoding="utf-8")
    settings = load_settings([conf_dir / "local.yaml", extra], ["rfm.bins=4", "inputs.orders.path=/data/orders"])
    assert (settings.rfm.bins, settings.rfm.method) == (4, "equal_width")
    assert settings.inputs.orders.path == "/data/orders"


def test_unknown_key_names_file_and_key(conf_dir, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rfm:\n  binz: 5\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_settings([conf_dir / "local.yaml", bad])
    assert f"{bad}: rfm.binz: unknown key" in str(err.value)


def test_wrong_type_from_command_line_is_attributed(conf_dir):
    with pytest.raises(ConfigError) as err:
        load_settings([conf_dir / "local.yaml"], ["rfm.bins=five"])
    assert "<command line>: rfm.bins:" in str(err.value)


def test_exclusive_rule_set_needs_catch_all_and_names_it(conf_dir, tmp_path):
    bad = tmp_path / "rules.yaml"
    bad.write_text(
        "segments:\n  rule_sets:\n    lifecycle_stage:\n      kind: exclusive\n      rules:\n"
        "        - {name: dormant, condition: recency_days > 180}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as err:
        load_settings([conf_dir / "local.yaml", bad])
    message = str(err.value)
    assert str(bad) in message and "segments.rule_sets.lifecycle_stage" in message and "'dormant'" in message


def test_thresholds_need_bins_minus_one_ascending_cuts(conf_dir):
    with pytest.raises(ConfigError, match=r"thresholds\.frequency needs 4 cut points"):
        load_settings([conf_dir / "local.yaml"], ["rfm.method=thresholds", "rfm.thresholds.frequency=[1, 2]"])


def test_malformed_yaml_names_line(conf_dir, tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("rfm:\n  bins: [1, 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken.yaml \(line \d+, column \d+\): malformed YAML"):
        load_settings([conf_dir / "local.yaml", bad])


def test_guard_limits_come_from_base_and_a_silent_window_inside_the_active_one_is_refused(conf_dir):
    guards = load_settings([conf_dir / "local.yaml"]).models.clv.guards
    assert guards.silent_days > guards.active_days and 0 < guards.min_dropout < 1
    with pytest.raises(ConfigError, match=r"<command line>: models\.clv\.guards.*silent_days \(20\) must be greater"):
        load_settings([conf_dir / "local.yaml"], ["models.clv.guards.silent_days=20"])


@pytest.mark.parametrize(
    ("layer", "section", "key"),
    [
        ("base.yaml", ("models", "clv"), "holdout_days"),
        ("base.yaml", ("models", "churn", "guards"), "max_loss_to_baseline"),
        ("base.yaml", (), "monitoring"),
        ("local.yaml", ("inputs", "orders"), "path"),
    ],
    ids=["business-default", "guard-limit", "whole-section", "environment-key"],
)
def test_missing_required_key_names_the_file_that_holds_its_section(conf_dir, tmp_path, layer, section, key):
    # Business defaults live only in base.yaml: a key removed from it is an error, never a silent pydantic default.
    layered = tmp_path / "conf"
    shutil.copytree(conf_dir, layered)
    data = yaml.safe_load((layered / layer).read_text(encoding="utf-8"))
    node = data
    for part in section:
        node = node[part]
    del node[key]
    (layered / layer).write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_settings([layered / "local.yaml"], ["models.clv.horizon_days=400"])
    dotted = ".".join((*section, key))
    assert f"{layered / layer}: {dotted}: missing key" in str(err.value)


def test_delta_jars_fall_back_to_the_environments_folder_and_name_both_when_neither_holds_one(tmp_path, monkeypatch):
    from segmentation.session import JARS_ENV, delta_jars

    installed = tmp_path / "installed"
    installed.mkdir()
    (installed / "delta-spark.jar").write_bytes(b"")
    monkeypatch.setenv(JARS_ENV, str(installed))
    # conf/local.yaml's relative folder, run from a directory where `make install` never ran
    assert delta_jars(str(tmp_path / ".cache/jars")) == [str(installed / "delta-spark.jar")]
    assert delta_jars(None) == [str(installed / "delta-spark.jar")]
    monkeypatch.setenv(JARS_ENV, str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match=r"spark.jars_dir: no Delta jars in .*\.cache/jars or .*empty; run `make"):
        delta_jars(str(tmp_path / ".cache/jars"))
    monkeypatch.delenv(JARS_ENV)
    assert delta_jars(None) == []
