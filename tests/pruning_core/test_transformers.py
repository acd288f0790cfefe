"""vit_tiny, gpt_tiny, the stdlib_text corpus and perplexity (docs/transformers.md)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from pruning_core.base.errors import ConfigError, DataError
from pruning_core.base.record import BY_NAME, EPOCH_METRICS
from pruning_core.masking.masks import MaskSet
from pruning_core.masking.targets import prunable_parameters
from pruning_core.trials.experiment import TrialResult, perplexity
from pruning_core.trials.loop import evaluate, train_epoch
from pruning_core.workloads.bundle import DataBundle
from pruning_core.workloads.data import dataset_spec, load_dataset
from pruning_core.workloads.models import create_model, initialise
from pruning_core.workloads.text_data import (
    CORPORA,
    corpus_files,
    corpus_info,
    unigram_perplexity,
    windows,
)

# ----------------------------------------------------------------------------- models


@pytest.mark.parametrize("init", ["reference", "torch"])
def test_vit_tiny_builds_and_forwards_at_cifar_shapes(init: str) -> None:
    torch.manual_seed(0)
    model = create_model("vit_tiny", (3, 32, 32), 10, init=init)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and bool(torch.isfinite(out).all())
    attn = model.blocks[0].attn
    assert isinstance(attn, nn.MultiheadAttention) and attn.in_proj_weight.shape == (384, 128)
    assert len(model.blocks) == 4 and model.blocks[0].mlp[0].out_features == 256
    head = model.head.weight.detach()
    assert float(head.abs().min()) > 0  # never zeros (torchvision's head is)
    if init == "reference":
        assert 0.01 < float(head.std()) < 0.03  # timm's trunc-normal 0.02


@pytest.mark.parametrize("init", ["reference", "torch"])
def test_gpt_tiny_builds_forwards_and_is_causal(init: str) -> None:
    torch.manual_seed(0)
    model = create_model("gpt_tiny", (16,), 256, init=init).eval()
    x = torch.randint(0, 256, (2, 16))
    out = model(x)
    assert out.shape == (2, 256, 16)  # (B, vocab, T)
    assert torch.equal(model(x.float()), out)  # float token ids read as ids (probes)
    y = x.clone()
    y[:, 10] = (y[:, 10] + 1) % 256
    changed = (model(y) - out).abs().amax(dim=(0, 1))  # per position
    assert bool((changed[:10] == 0).all()) and bool((changed[10:] > 0).all())


def test_gpt_tiny_reference_init_is_nanogpts() -> None:
    torch.manual_seed(0)
    model = create_model("gpt_tiny", (64,), 256, n_layer=2, n_embd=128)
    assert float(model.h[0].mlp.c_fc.weight.detach().std()) == pytest.approx(0.02, rel=0.05)
    c_proj = model.h[0].attn.c_proj.weight.detach()
    assert float(c_proj.std()) == pytest.approx(0.02 / math.sqrt(2 * 2), rel=0.05)
    assert float(model.h[0].attn.c_attn.bias.detach().abs().max()) == 0.0


def test_gpt_tiny_tied_weights_are_one_parameter_and_sdpa_matches() -> None:
    torch.manual_seed(0)
    tied = create_model("gpt_tiny", (8,), 256, tie_weights=True)
    assert tied.wte.weight is tied.lm_head.weight
    assert "lm_head.weight" in prunable_parameters(tied)
    torch.manual_seed(0)
    plain = create_model("gpt_tiny", (8,), 256).eval()
    torch.manual_seed(0)
    fused = create_model("gpt_tiny", (8,), 256, sdpa=True).eval()
    x = torch.randint(0, 256, (2, 8))
    assert torch.allclose(plain(x), fused(x), atol=1e-5)


@pytest.mark.parametrize(("name", "shape", "options", "field"), [
    ("gpt_tiny", (3, 32, 32), {}, r"input_shape \(block_size,\)"),
    ("gpt_tiny", (8,), {"n_embd": 30, "n_head": 4}, "multiple of heads"),
    ("vit_tiny", (3, 30, 30), {}, "model.options.patch"),
    ("vit_tiny", (3, 32, 32), {"heads": 3}, "multiple of heads"),
])
def test_bad_options_one_line_errors(name, shape, options, field) -> None:
    with pytest.raises(ConfigError, match=field):
        create_model(name, shape, 256, **options)


@pytest.mark.parametrize("init", ["reference", "torch"])
@pytest.mark.parametrize(("name", "shape"), [("vit_tiny", (3, 8, 8)), ("gpt_tiny", (8,))])
def test_init_is_deterministic_under_a_seed_and_redraws(name: str, shape, init: str) -> None:
    def state(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(seed)
        return list(create_model(name, shape, 7, init=init).state_dict().values())

    a, b, c = state(0), state(0), state(1)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    # every tensor drawn at random differs under another seed (LayerNorm 1/0, zero biases do not)
    differ = [not torch.equal(x, y) for x, y in zip(a, c, strict=True)]
    assert sum(differ) >= (4 if name == "gpt_tiny" else 6)
    torch.manual_seed(0)
    model = create_model(name, shape, 7, init=init)
    initialise(model, seed=5)
    assert not all(torch.equal(x, y) for x, y in zip(a, model.state_dict().values(),
                                                        strict=True))


# ----------------------------------------------------------------------------- LM loss


class FixedLogits(nn.Module):
    """Returns given logits (B, V, T), plus a zero parameter so training can step."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.zero = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[: len(x)] + self.zero


def test_lm_loss_and_accuracy_are_per_token_by_hand() -> None:
    """Two sequences of two tokens, vocabulary 3. Sequence 0: both tokens right; sequence 1:
    one right. Per token 3 / 4 (per sequence it would be 1 / 2)."""
    logits = torch.tensor([[[2.0, 0.0], [0.0, 0.0], [0.0, 0.0]],    # seq 0: argmax 0, 0
                           [[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]]])  # seq 1: argmax 1, 2
    y = torch.tensor([[0, 0], [1, 0]])  # seq 0 right twice; seq 1 right at t0, wrong at t1
    e = math.e
    ce = [-math.log(e**2 / (e**2 + 2)), -math.log(1 / 3),  # seq 0, t0 and t1
          -math.log(e / (e + 2)), -math.log(1 / (2 + e**3))]  # seq 1
    model = FixedLogits(logits)
    batches = [(torch.zeros(2, 2), y)]
    stats = evaluate(model, batches, torch.device("cpu"))
    assert stats.accuracy == pytest.approx(0.75)
    assert stats.loss == pytest.approx(sum(ce) / 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    train = train_epoch(model, batches, opt, MaskSet({}), torch.device("cpu"))
    assert train.accuracy == pytest.approx(0.75) and train.loss == pytest.approx(sum(ce) / 4)


# ----------------------------------------------------------------------------- corpus


def test_stdlib_corpus_is_deterministic_and_split_by_file() -> None:
    a, b = load_dataset("stdlib_text"), load_dataset("stdlib_text")
    for split in ("train", "test"):
        for ta, tb in zip(getattr(a, split).tensors, getattr(b, split).tensors, strict=True):
            assert torch.equal(ta, tb) and ta.dtype == torch.int64
    train, test = corpus_files("small")
    assert not {p.name for p in train} & {p.name for p in test}
    assert [p.name for p in train] == list(CORPORA["small"][0])
    x, y = a.test.tensors
    raw = b"".join(p.read_bytes() for p in test)  # the test split is the test files' bytes
    assert bytes(x.flatten().tolist()) + bytes([int(y[-1, -1])]) == raw[: x.numel() + 1]
    assert a.input_shape == (64,) and a.num_classes == 256
    info = corpus_info()
    assert len(info["sha256"]) == 64 and info["python"].count(".") == 2
    assert dataset_spec("stdlib_text", block_size=32) == ((32,), 256)


def test_windows_every_target_once_by_hand() -> None:
    x, y = windows(bytes(range(10)), 4)  # (10 - 1) // 4 = 2 windows of 5 bytes, every 4
    assert x.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert y.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]


def test_corpus_all_rule_and_errors_on_a_directory(tmp_path: Path) -> None:
    for i in range(20):
        (tmp_path / f"m{i:02d}.py").write_text(f"x = {i}\n" * 20)
    train, test = corpus_files("all", str(tmp_path))
    assert [p.name for p in test] == ["m09.py", "m19.py"]  # the 10th and 20th by name
    assert len(train) == 18
    bundle = load_dataset("stdlib_text", root=str(tmp_path), corpus="all", block_size=8)
    assert len(bundle.test) == (20 * len("x = 9\n") + 20 * len("x = 19\n") - 1) // 8
    with pytest.raises(DataError, match="abc.py"):
        corpus_files("small", str(tmp_path))
    with pytest.raises(ConfigError, match="data.options.corpus"):
        corpus_files("huge")
    with pytest.raises(ConfigError, match="block_size"):
        load_dataset("stdlib_text", block_size=0)


def test_unigram_perplexity_by_hand() -> None:
    """Train targets 0, 0, 1 -> add-one counts 3, 2 and 1 for the 254 others (total 259)."""
    bundle = DataBundle(train=TensorDataset(torch.zeros(1, 3), torch.tensor([[0, 0, 1]])),
                        test=TensorDataset(torch.zeros(1, 2), torch.tensor([[0, 1]])),
                        input_shape=(3,), num_classes=256, name="t")
    expected = math.exp(-(math.log(3 / 259) + math.log(2 / 259)) / 2)
    assert unigram_perplexity(bundle) == pytest.approx(expected)


# ----------------------------------------------------------------------------- perplexity


def test_perplexity_is_a_minimised_epoch_and_final_metric() -> None:
    assert perplexity(math.log(13.5)) == pytest.approx(13.5)
    assert perplexity(1e4) == math.inf and math.isnan(perplexity(math.nan))
    m = BY_NAME["perplexity"]
    assert m.better == "min" and "perplexity" in EPOCH_METRICS
    assert "perplexity" in TrialResult.__dataclass_fields__


# ----------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_prunetune_run_gpt_tiny_one_epoch_beats_the_unigram_baseline(tmp_path: Path) -> None:
    """One epoch of the shipped config, 50 % OWL-allocated magnitude pruning at init: the
    trained LM's test perplexity is well below the byte-frequency model's (~21.8 on 3.11)."""
    import json
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    out = tmp_path / "r.json"
    p = subprocess.run(
        [sys.executable, "-m", "sweeps.cli", "run", "configs/stdlib_gpt_tiny.yaml",
         "--set", "train.epochs=1", "--set", "prune.sparsity=0.5",
         "--set", "prune.allocation.name=owl", "--json", str(out)],
        cwd=repo, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert "perplexity" in p.stdout
    r = json.loads(out.read_text())
    assert r["status"] == "ok" and abs(r["sparsity"] - 0.5) < 1e-4
    assert r["perplexity"] == pytest.approx(math.exp(r["test_loss"]))
    assert r["history"][0]["perplexity"] == pytest.approx(r["perplexity"])
    baseline = unigram_perplexity(load_dataset("stdlib_text"))
    assert r["perplexity"] < 0.85 * baseline


def test_vit_tiny_prunes_and_trains_on_synthetic_cifar_shaped_data() -> None:
    """The whole trial path (SNIP at init, ERK, 50 %) on random CIFAR-shaped data: the
    training loss falls and every epoch reports a perplexity."""
    from pruning_core.trials.experiment import run
    from pruning_core.trials.registries import load_trial_config

    cfg = load_trial_config({
        "seed": 0,
        "model": {"name": "vit_tiny", "options": {"depth": 1, "width": 32, "heads": 2,
                                                  "mlp": 64}},
        "data": {"name": "synthetic", "batch_size": 32,
                 "options": {"num_train": 256, "num_test": 64}},
        "train": {"epochs": 3, "optimizer": "adamw", "lr": 0.003, "device": "cpu"},
        "prune": {"criterion": "snip", "sparsity": 0.5, "allocation": {"name": "erk"}},
    })
    r = run(cfg)
    assert r.status == "ok" and abs(r.sparsity - 0.5) < 1e-3 and not r.collapsed_layers
    losses = [h["train_loss"] for h in r.history]
    assert losses[-1] < losses[0]
    assert all(h["perplexity"] == pytest.approx(math.exp(h["test_loss"])) for h in r.history)


def test_class_balanced_scoring_on_a_language_model_is_one_line() -> None:
    from pruning_core.trials.experiment import run
    from pruning_core.trials.registries import load_trial_config

    cfg = load_trial_config({
        "model": {"name": "gpt_tiny", "options": {"n_layer": 1, "n_embd": 16}},
        "data": {"name": "stdlib_text", "options": {"block_size": 16}},
        "train": {"epochs": 0, "device": "cpu"},
        "prune": {"criterion": "snip", "sparsity": 0.5, "score_samples_per_class": 2},
    })
    with pytest.raises(ConfigError, match="prune.score_samples_per_class: needs one class"):
        run(cfg)
