"""The trial configuration: ``TrialConfig`` and its sections (model, data, train, prune,
metrics), with their limits. Schema only: names are checked against the registries by
``pruning_core.trials.registries.load_trial_config``."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from ..base.errors import ConfigError
from .strict import Strict

#: the most prune steps a schedule may take (each step scores the whole network)
MAX_PRUNE_STEPS = 10_000
#: seeds are 64-bit signed integers (numpy / torch / Python all take them)
MAX_SEED = 2**63
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
#: the most training epochs a trial (or a pre-training phase) may run
MAX_EPOCHS = 100_000
#: the most CPU threads torch may be given
MAX_THREADS = 1_024
#: the largest training / evaluation batch
MAX_BATCH = 1_000_000


class ModelConfig(Strict):
    #: a registered name, ``tv:<torchvision classifier>``, or ``"my_pkg.nets:build"``
    name: str = "cnn1d"
    #: extra keyword arguments for the model builder (``hidden`` for mlp, ``width`` for vgg/resnet)
    options: dict[str, Any] = Field(default_factory=dict)
    #: trained weights to start from: a .safetensors file or a torch state dict (weights_only)
    weights: str | None = None
    #: every key of the model must be in ``weights`` (false: load the matching keys only)
    weights_strict: bool = True


class DataConfig(Strict):
    name: str = "mnist1d"
    #: directory holding a user-supplied dataset (cifar10, cifar100, mnist, fashion_mnist)
    root: str | None = None
    batch_size: int = Field(128, ge=1, le=MAX_BATCH)
    eval_batch_size: int = Field(1000, ge=1, le=MAX_BATCH)
    #: keep only the first N training examples (quick runs); None = all
    train_limit: int | None = Field(None, ge=1)
    test_limit: int | None = Field(None, ge=1)
    #: overfitting studies: this fraction of the training labels replaced by another class,
    #: drawn uniformly, seeded by ``seed`` (test labels are never touched)
    label_noise: float = Field(0.0, ge=0.0, lt=1.0)
    #: dataset-specific keyword arguments (e.g. ``num_train`` for synthetic)
    options: dict[str, Any] = Field(default_factory=dict)
    #: training-set augmentation on the device: none, or crop_flip (the CIFAR recipe: random
    #: crop with 4-pixel padding of black pixels, horizontal flip)
    augment: Literal["none", "crop_flip"] = "none"


class TrainConfig(Strict):
    epochs: int = Field(10, ge=0, le=MAX_EPOCHS)
    optimizer: Literal["sgd", "adam", "adamw"] = "adam"
    lr: float = Field(1e-2, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    lr_schedule: Literal["constant", "cosine", "step"] = "constant"
    #: ``step``: where the learning rate is multiplied by ``lr_gamma``, as fractions of each
    #: training phase (0.5, 0.75: epochs 80 and 120 of 160, as GraSP and open_lth;
    #: Synaptic-Flow's 60 and 120 of 160 are 0.375, 0.75)
    lr_milestones: list[float] = Field(default_factory=lambda: [0.5, 0.75])
    lr_gamma: float = Field(0.1, gt=0, le=1)
    #: epochs of linear learning-rate warm-up at the start of each training phase
    warmup_epochs: int = Field(0, ge=0, le=MAX_EPOCHS)
    #: bf16 autocast for the forward pass on CUDA (weights and masks stay float32)
    amp: Literal["none", "bf16"] = "none"
    #: channels-last memory format for 4-D inputs and conv weights
    channels_last: bool = False
    #: torch.compile the training forward pass
    compile: bool = False
    #: ``auto`` (cuda when available), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``
    device: str = "auto"
    #: CPU threads for torch; None leaves torch's default
    threads: int | None = Field(None, ge=1, le=MAX_THREADS)

    @field_validator("lr_milestones")
    @classmethod
    def _milestones_in_the_phase(cls, v: list[float]) -> list[float]:
        if any(not 0 < f < 1 for f in v) or v != sorted(v):
            raise ValueError(f"{v}: milestones are increasing fractions of the training phase, "
                             "each between 0 and 1 (e.g. [0.5, 0.75])")
        return v

    @field_validator("device")
    @classmethod
    def _device_name(cls, v: str) -> str:
        if not _DEVICE_RE.match(v):
            raise ValueError(f"unknown device {v!r}; use auto, cpu, cuda, cuda:N or mps")
        return v


class AllocationConfig(Strict):
    """How a total sparsity is split over the prunable layers."""

    name: str = "global"
    #: explicit per-layer sparsities: {layer name: s} or [s per prunable layer, in model order]
    layer_sparsity: dict[str, float] | list[float] | None = None
    keep_first_dense: bool = False
    keep_last_dense: bool = False
    #: every prunable layer keeps at least this fraction of its weights
    min_density: float = Field(0.0, ge=0, le=1)
    #: ERK exponent (RigL's power_scale)
    erk_power: float = Field(1.0, ge=0)
    #: OWL (luuyin/OWL): layer sparsities within sparsity +- owl_lambda ("Lamda")
    owl_lambda: float = Field(0.08, ge=0, lt=0.5)
    #: OWL: an outlier's Wanda score exceeds owl_m times its layer's mean ("Hyper_m")
    owl_m: float = Field(5.0, gt=0)
    #: OWL: outlier ratios per transformer block ("block", the authors') or per tensor
    owl_group: Literal["block", "layer"] = "block"

    @field_validator("layer_sparsity")
    @classmethod
    def _in_range(cls, v: dict[str, float] | list[float] | None) -> Any:
        vals = v.values() if isinstance(v, dict) else (v or [])
        for s in vals:
            if not 0.0 <= s < 1.0:
                raise ValueError(f"layer sparsity {s} outside [0, 1); use a value like 0.9")
        return v

    @model_validator(mode="after")
    def _vector_needs_explicit(self) -> AllocationConfig:
        # only the explicit allocation reads layer_sparsity: elsewhere it would be ignored
        if self.layer_sparsity is not None and self.name != "explicit":
            raise ValueError(
                f"layer_sparsity is only read by allocation 'explicit', not {self.name!r}; "
                "set prune.allocation.name: explicit or remove layer_sparsity"
            )
        return self


class TimingConfig(Strict):
    """When pruning happens relative to training."""

    name: str = "before"
    #: ``during``: epochs at which prune events fire (each advances one schedule step);
    #: default: spread evenly over the first half of training
    prune_epochs: list[int] | None = None
    #: ``after``: epochs of dense training before pruning (fine-tuning then runs train.epochs)
    pretrain_epochs: int = Field(5, ge=0, le=MAX_EPOCHS)
    #: ``imp``: epoch whose weights the kept weights rewind to (0 = original lottery ticket)
    rewind_epoch: int = Field(0, ge=0)


class ScreenConfig(Strict):
    """Doomed trials, ended before they train (``pruning_core/effective.py``): the masks leave
    no input -> output path (the output cannot depend on the input: chance accuracy whatever
    the training), or an effective density below ``min_density``. The default (no path,
    ``min_density`` 0) never ends a trainable network; an empty layer on a residual branch is
    not doomed (the skip path still trains)."""

    enabled: bool = True
    #: also doomed: fewer than this fraction of the prunable weights on some path
    min_density: float = Field(0.0, ge=0.0, lt=1.0)


class PatternConfig(Strict):
    """N:M semi-structured sparsity: N weights kept in every M consecutive along a row."""

    n: int = Field(ge=1)
    m: int = Field(ge=1, le=1024)

    @model_validator(mode="after")
    def _n_le_m(self) -> PatternConfig:
        if self.n > self.m:
            raise ValueError(f"n={self.n} is more than m={self.m}; N:M keeps n of every m "
                             "weights (e.g. {n: 2, m: 4})")
        return self


def parse_pattern(text: str) -> dict[str, int] | None:
    """``"2:4"`` -> ``{"n": 2, "m": 4}``; ``"none"`` -> None (unstructured)."""
    if text.strip().lower() == "none":
        return None
    n, sep, m = text.partition(":")
    if not sep or not n.strip().isdigit() or not m.strip().isdigit():
        raise ValueError(f"pattern: {text!r} is not N:M (e.g. '2:4', or 'none')")
    return {"n": int(n), "m": int(m)}


class PruneConfig(Strict):
    criterion: str = "snip"
    #: criterion-specific options, validated by the criterion's own options model
    criterion_options: dict[str, Any] = Field(default_factory=dict)
    sparsity: float = Field(0.9, ge=0.0, lt=1.0)
    schedule: str = "one_shot"
    steps: int = Field(1, ge=1)
    allocation: AllocationConfig = Field(default_factory=AllocationConfig)
    timing: TimingConfig = Field(default_factory=TimingConfig)
    #: WACV 2020 variants: ``none``, ``reinit`` (keep mask, re-draw weights),
    #: ``random_sparse`` (random mask with the same per-layer sparsities)
    variant: str = "none"
    #: glob patterns on parameter names; default: weights of Conv/Linear layers
    include: list[str] = Field(default_factory=lambda: ["*"])
    exclude: list[str] = Field(default_factory=list)
    #: batches of training data used by data-driven criteria
    score_batches: int = Field(1, ge=1)
    #: a class-balanced scoring set instead of shuffled batches: this many training examples
    #: of each class (GraSP's official ``samples_per_class``; 10 for CIFAR-10), split into
    #: ``score_batches`` batches; None (default): ``score_batches`` shuffled batches, so SNIP
    #: and GraSP see the same examples in a sweep
    score_samples_per_class: int | None = Field(None, ge=1)
    #: ``weight``: unstructured (single weights); ``channel``: whole conv output channels and
    #: linear units in coupled groups (SNAP / SNAP-it; ``sparsity`` then targets the fraction of
    #: channels removed, see docs/structured.md)
    granularity: Literal["weight", "channel"] = "weight"
    #: ``channel`` only: after the last prune event, rebuild the network without the removed
    #: channels (a smaller dense model that trains and runs faster); false keeps masks
    compact: bool = True
    #: after each prune event, also prune the kept weights that lie on no input -> output path
    #: (``pruning_core/effective.py``): they carry no input-dependent signal, and the
    #: reported sparsity becomes the effective one
    remove_disconnected: bool = False
    #: false (default): a layer whose weights are all zero when it is scored (torchvision's
    #: zero-initialised ViT head) is left out of pruning, with a warning: every |θ|-based score
    #: is 0 there, so it would be emptied first and disconnect the network. True prunes it
    #: like any other layer (e.g. to reproduce a paper that did)
    prune_zero_layers: bool = False
    #: end a trial whose masks leave it untrainable right after they are made (status doomed)
    screen: ScreenConfig = Field(default_factory=lambda: ScreenConfig())
    #: comparison group of the selection (pruning_core/masking/compare.py: layer, row, nm);
    #: None: the criterion's default (layer; Wanda: row)
    compare: str | None = None
    #: N:M semi-structured sparsity ({n: 2, m: 4}); sparsity is then 1 - n/m (set it to that
    #: or leave it out), the allocation is not read and the selection is ``nm``
    pattern: PatternConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _pattern_sparsity(cls, data: Any) -> Any:
        # "2:4" is {n: 2, m: 4} and "none" no pattern (a sweep's choice values are scalars)
        if isinstance(data, dict) and isinstance(data.get("pattern"), str):
            data = {**data, "pattern": parse_pattern(data["pattern"])}
        # an N:M pattern defines the sparsity: fill it in when the user left it out
        if isinstance(data, dict) and "sparsity" not in data:
            pat = data.get("pattern")
            if isinstance(pat, dict) and isinstance(pat.get("n"), int) \
                    and isinstance(pat.get("m"), int) and 0 < pat["n"] <= pat["m"]:
                data = {**data, "sparsity": 1.0 - pat["n"] / pat["m"]}
        return data

    @model_validator(mode="after")
    def _pattern_rules(self) -> PruneConfig:
        pat = self.pattern
        if pat is None:
            if self.compare == "nm":
                raise ValueError("compare: nm needs pattern (e.g. pattern: {n: 2, m: 4})")
            if self.compare is not None and self.granularity != "weight":
                raise ValueError("compare: channel pruning ranks whole channels; remove compare "
                                 "or set granularity: weight")
            return self
        implied = 1.0 - pat.n / pat.m
        clashes = [
            (abs(self.sparsity - implied) > 1e-9,
             f"sparsity {self.sparsity} differs from 1 - n/m = {implied:.4f}; set "
             f"sparsity: {implied:.4f} or leave it out"),
            (self.compare not in (None, "nm"), f"compare {self.compare!r} does not apply to an "
             "N:M pattern (its groups are the comparison); remove compare"),
            (self.steps != 1, "an N:M pattern is reached in one step; set steps: 1"),
            (self.granularity != "weight", "an N:M pattern needs granularity: weight"),
            (self.allocation.name == "explicit", "an N:M pattern fixes every layer's "
             "sparsity; remove the explicit allocation"),
            (self.variant == "random_sparse", "random_sparse redraws masks without the N:M "
             "pattern; use variant none or reinit"),
            (self.remove_disconnected, "remove_disconnected would break the N:M groups; set "
             "it false"),
        ]
        for bad, message in clashes:
            if bad:
                raise ValueError(f"pattern: {message}")
        return self

    @field_validator("steps")
    @classmethod
    def _steps_bounded(cls, v: int) -> int:
        if v > MAX_PRUNE_STEPS:
            raise ValueError(f"{v} steps is more than the {MAX_PRUNE_STEPS} allowed "
                             "(each step scores the whole network); use fewer steps")
        return v

    @field_validator("allocation", mode="before")
    @classmethod
    def _allocation_shorthand(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @field_validator("timing", mode="before")
    @classmethod
    def _timing_shorthand(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v


class SimilarityConfig(Strict):
    """Representation similarity of the trial's network to a dense reference (WACV 2020)."""

    #: cka (linear), debiased_cka, svcca, pwcca (see pruning_core/similarity)
    method: Literal["cka", "debiased_cka", "svcca", "pwcca"] = "cka"
    #: layer (module) names to compare, or "all": every Conv/Linear module
    layers: list[str] | Literal["all"] = "all"
    #: the same architecture, seed, data and training, dense, trained once per sweep
    reference: Literal["dense"] = "dense"
    #: test-set examples the activations are taken on
    examples: int = Field(1000, ge=10)


class SpeedConfig(Strict):
    """Measured speed of the final network and of the dense one, on the trial's device: warm-up,
    then the median of ``repeats`` (see pruning_core/structured/speed.py)."""

    warmup: int = Field(3, ge=0, le=1000)
    repeats: int = Field(10, ge=1, le=10_000)


class AdversarialConfig(Strict):
    """Adversarial accuracy of the final network on a fixed, seeded test subset
    (``pruning_core/adversarial.py``)."""

    attack: Literal["fgsm", "pgd", "carlini_wagner"] = "pgd"
    #: perturbation budget in units of the valid input range (pixel units for normalised
    #: images; linf: per element, l2: per example); None: 8/255 for linf, 0.5 for l2
    eps: float | None = Field(None, gt=0)
    #: iterations; None: pgd 10 (HYDRA), carlini_wagner 10,000 per binary-search step
    #: (foolbox's default, which SNIP-it runs)
    steps: int | None = Field(None, ge=1, le=100_000)
    #: step size (pgd: default eps / 4; carlini_wagner: its Adam learning rate, default 0.01)
    step_size: float | None = Field(None, gt=0)
    #: carlini_wagner is always l2
    norm: Literal["linf", "l2"] = "linf"
    #: test examples attacked (the first ``samples`` of a seeded permutation)
    samples: int = Field(512, ge=1)


class MetricsConfig(Strict):
    #: extra, costlier metrics computed at the end of a trial
    similarity: SimilarityConfig | None = None
    #: latency_ms, latency_ms_batch1, train_step_ms (final and dense) and speedup
    speed: SpeedConfig | None = None
    #: adv_accuracy: accuracy under attack (FGSM, PGD or Carlini-Wagner) of the final network
    adversarial: AdversarialConfig | None = None
    #: in a sweep, keep every trial's final weights as <results>/weights/<trial_id>.safetensors
    #: (``prunetune similarity --results`` compares two trials by id; local results only)
    keep_weights: bool = False


class TrialConfig(Strict):
    seed: int = Field(0, ge=0, lt=MAX_SEED)
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    prune: PruneConfig = Field(default_factory=PruneConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    #: free-form tags carried into results (sweep name, trial id, ...)
    tags: dict[str, Any] = Field(default_factory=dict)



def check_device_available(device: str) -> None:
    """``train.device`` names hardware this process can use (``auto`` always can)."""
    import torch

    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.partition(":")[2] or 0)
        if count == 0:
            raise ConfigError(f"train.device: {device!r} but no CUDA GPU is available here; "
                              "use train.device: auto or cpu")
        if index >= count:
            raise ConfigError(f"train.device: {device!r} but this machine has {count} CUDA "
                              f"GPU(s) (cuda:0..cuda:{count - 1})")
    elif device == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError("train.device: 'mps' but Apple MPS is not available here; "
                              "use train.device: auto or cpu")
