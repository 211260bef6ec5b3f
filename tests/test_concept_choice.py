"""Which CRP concepts a card shows (explain/concept_choice.py): the top channels by |share|, or
"distinct" ones (evidence for the class, each next where the ones before have none)."""

import pytest
import torch

from lesionlens.explain.concept_choice import CHOICES, choose_batch, choose_channels


def _layer(spots: dict[int, tuple[int, int, float]], channels: int = 6) -> torch.Tensor:
    """(channels, 4, 4) relevance: channel -> (row, column, value) at one cell."""
    relevance = torch.zeros(channels, 4, 4)
    for channel, (row, column, value) in spots.items():
        relevance[channel, row, column] = value
    return relevance


def test_distinct_skips_a_copy_of_a_chosen_concept_and_counter_evidence():
    # 0 and 1: the strongest evidence, on the same cell (a copy); 2: weaker, elsewhere;
    # 3: counter-evidence, larger than 2; 4: weak, on a third cell; 5: nothing
    relevance = _layer({0: (0, 0, 0.30), 1: (0, 0, 0.25), 2: (3, 3, 0.15), 3: (2, 2, -0.20), 4: (1, 3, 0.10)})
    shares = relevance.flatten(1).sum(1) / relevance.abs().sum()
    assert choose_channels(shares, relevance, 3, "top").tolist() == [0, 1, 3]
    assert choose_channels(shares, relevance, 3, "distinct").tolist() == [0, 2, 4]
    # the copy still comes once nothing new is left; counter-evidence only when the evidence runs out
    assert choose_channels(shares, relevance, 5, "distinct").tolist() == [0, 2, 4, 1, 3]
    assert choose_channels(shares, relevance, 6, "distinct").tolist() == [0, 2, 4, 1, 3, 5]


def test_distinct_weighs_overlap_by_how_much_is_shared():
    # channel 1 half on channel 0's cell, half elsewhere; channel 2 wholly elsewhere but weaker
    relevance = _layer({0: (0, 0, 0.4), 2: (3, 3, 0.12)})
    relevance[1, 0, 0], relevance[1, 2, 2] = 0.15, 0.15  # 0.30 in all, half of it new: 0.15 > 0.12
    shares = relevance.flatten(1).sum(1) / relevance.abs().sum()
    assert choose_channels(shares, relevance, 2, "distinct").tolist() == [0, 1]
    relevance[1, 0, 0], relevance[1, 2, 2] = 0.25, 0.05  # mostly a copy now: 0.05 new < 0.12
    shares = relevance.flatten(1).sum(1) / relevance.abs().sum()
    assert choose_channels(shares, relevance, 2, "distinct").tolist() == [0, 2]


def test_a_batch_is_chosen_image_by_image_and_a_bad_choice_is_refused():
    generator = torch.Generator().manual_seed(0)
    relevance = torch.randn(3, 40, 5, 5, generator=generator)
    shares = relevance.flatten(2).sum(2)
    for choice in CHOICES:
        batch = choose_batch(shares, relevance, 7, choice)
        assert batch.shape == (3, 7)
        for i in range(3):
            assert batch[i].tolist() == choose_channels(shares[i], relevance[i], 7, choice).tolist()
            assert len(set(batch[i].tolist())) == 7
    assert choose_batch(shares, relevance, 7, "top").tolist() == \
        torch.argsort(shares.abs(), dim=1, descending=True)[:, :7].tolist()
    with pytest.raises(ValueError, match="concept choice"):
        choose_batch(shares, relevance, 7, "best")


@pytest.mark.parametrize("method", ["crp", "attention_crp"])
def test_the_explainer_shows_the_channels_the_choice_picks(tmp_path, method):
    """On a model (both engines for crp): the distinct concepts are the channels choose_channels
    picks from the layer's relevance, evidence for the class first; the info says which choice."""
    from conftest import write_random_run
    from lesionlens.errors import ExplainError
    from lesionlens.explain import Explainer
    from lesionlens.explain.fast_crp import channel_shares, layer_relevance
    from lesionlens.training.rundir import load_run

    model, _ = load_run(write_random_run(tmp_path / "run", "attention_resnet50", size=64))
    generator = torch.Generator().manual_seed(3)
    for module in model.modules():  # timm zero-initialises each block's last BatchNorm scale
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data = torch.rand(module.weight.shape, generator=generator) + 0.5
    x = torch.randn(2, 3, 64, 64, generator=generator)
    engines = ("fast", "zennit") if method == "crp" else ("fast",)
    found = {}
    for engine in engines:
        with Explainer(model, method, concepts=5, concept_choice="distinct", engine=engine) as explainer:
            found[engine] = explainer.explain(x, [1, 1])
            assert found[engine][0].info["concept_choice"] == "distinct"
    if method == "crp":
        with Explainer(model, "crp", concepts=1) as explainer:  # the fast engine's prepared model
            layer = explainer.model.get_submodule(explainer.layer)
            _, at_layer, _, _ = layer_relevance(explainer.model, x, torch.tensor([1, 1]), layer)
        expected = choose_batch(channel_shares(at_layer), at_layer, 5, "distinct").tolist()
        for engine in engines:
            assert [[c.channel for c in e.concepts] for e in found[engine]] == expected
    for explanation in found["fast"]:
        shares = [c.relevance_share for c in explanation.concepts]
        assert all(s > 0 for s in shares), shares  # 5 of hundreds of channels: evidence enough
        assert shares[0] == max(shares)
    with pytest.raises(ExplainError, match="concept choice"):
        Explainer(model, method, concept_choice="best")
    with pytest.raises(ExplainError, match="do not apply"):
        Explainer(model, "lrp", concept_choice="distinct")
