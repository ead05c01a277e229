"""The dense-baseline registry (lighthouse.harness.baselines): one entry per baseline, everything derived."""

from lighthouse.harness import baselines, tables
from lighthouse.harness.options import parse_baselines


def test_every_baseline_is_one_entry_and_everything_follows_from_it():
    """Catches a baseline added in one place only: the option values, the CSV impls, the speedup columns and the
    chart colours all come from the registry, one entry each, none shared."""
    names = [b.name for b in baselines.REGISTRY]
    csvs = [b.csv for b in baselines.REGISTRY]
    assert len(set(names)) == len(names) and len(set(csvs)) == len(csvs)
    assert len({b.colour for b in baselines.REGISTRY}) == len(names)
    assert tables.BASELINES == dict(zip(names, csvs))
    assert [c for c in tables.SWEEP.columns if c.startswith("speedup_vs_")] == [f"speedup_vs_{c}" for c in csvs]
    assert parse_baselines(",".join(csvs)) == names  # the CSV spelling is accepted as well


def test_sdpa_baselines_force_their_backend_and_flex_is_cuda_only_by_default():
    """Catches the backend of a dense row taken from string surgery on its name, or FlexAttention compiled by
    default on a CPU sweep."""
    import torch

    for b in baselines.REGISTRY:
        assert b.sdpa_backend == (None if b.name == "flex" else b.name)
    runs_everywhere = lambda backend, device, dtype: True  # noqa: E731 - a probe that says yes
    assert "flex" not in baselines.defaults(torch.device("cpu"), ["fp32"], runs_everywhere)
    assert baselines.short("sdpa_cudnn") == "cudnn" and baselines.short("lighthouse_torch") == "lighthouse_torch"
