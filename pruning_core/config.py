"""Typed trial configuration: the one place a dict becomes types.

``TrialConfig.model_validate(d)`` checks the schema: types, ranges, unknown keys; every error
names the dotted field. Names (criterion, schedule, model, ...) are checked against their
registries by ``pruning_core.trials.registries.load_trial_config``, the one place a dict becomes a
trial config: this module sits below the registries and imports none of them.
"""

from __future__ import annotations

import re
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from .base.errors import ConfigError

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


def _members(annotation: Any) -> list[Any]:
    """The alternatives of an annotation (``int | None`` -> [int, None], Annotated unwrapped)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _members(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [m for a in get_args(annotation) for m in _members(a)]
    return [annotation]


def bool_as_number(annotations: list[Any], value: Any) -> tuple[tuple[Any, ...], bool] | None:
    """A boolean in ``value`` that a field of these annotations would read as a number
    (pydantic's lax mode takes ``true`` as 1): ``(where, the boolean)``, ``where`` being ``()``
    for the value itself or the index / key path of an item; ``None`` when there is none."""
    members = [m for a in annotations for m in _members(a)]
    if isinstance(value, bool):
        takes_bool = any(m is bool or m is Any or (get_origin(m) is Literal
                                                    and any(a is value for a in get_args(m)))
                         for m in members)
        numeric = any(m in (int, float) for m in members)
        return ((), value) if numeric and not takes_bool else None
    if isinstance(value, list | tuple):
        inner = [a for m in members if get_origin(m) in (list, tuple, set, frozenset)
                 for a in get_args(m) if a is not Ellipsis]
        for i, item in enumerate(value if inner else ()):
            found = bool_as_number(inner, item)
            if found is not None:
                return (i, *found[0]), found[1]
    if isinstance(value, dict):
        inner = [get_args(m)[1] for m in members
                 if get_origin(m) is dict and len(get_args(m)) == 2]
        for key, item in (value.items() if inner else ()):
            found = bool_as_number(inner, item)
            if found is not None:
                return (key, *found[0]), found[1]
    return None


class NoBoolNumbers(BaseModel):
    """Refuses ``true`` / ``false`` where a field wants a number.

    pydantic's lax mode reads a boolean as 0 / 1, so ``epochs: true`` silently ran one epoch.
    The models of every file a user writes (configs, spaces, schedules) derive from this.
    (A model validator: a ``field_validator("*", mode="before")`` is not allowed on the
    discriminator fields of the space's params.)
    """

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        errors: list[InitErrorDetails] = []
        for name, field in cls.model_fields.items():
            if name not in data:
                continue
            found = bool_as_number([field.annotation], data[name])
            if found is not None:
                where, flag = found
                errors.append(InitErrorDetails(
                    type=PydanticCustomError(
                        "bool_as_number", "{flag} where a number is expected (true/false are "
                        "not numbers); write the number", {"flag": str(flag).lower()}),
                    loc=(name, *where), input=flag))
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return data


class Strict(NoBoolNumbers):
    # inf / nan pass the range checks of unbounded fields (lr: .inf) and fail a trial later
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


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


def _loc(err: dict[str, Any]) -> str:
    return ".".join(str(p) for p in err["loc"]) or "<root>"


def keys_at(model: type[BaseModel], loc: Sequence[Any]) -> list[str] | None:
    """The keys the mapping holding ``loc``'s last part may have, ``model`` being the root
    (``loc`` is a validation error's location: ``("prune", "sparsty")`` -> PruneConfig's
    fields); ``None`` where that mapping is not one model's fields (a free dict)."""
    return _walk(model, loc)[0]


def _walk(model: type[BaseModel], loc: Sequence[Any]) -> tuple[list[str] | None, list[str]]:
    """``keys_at`` and the path to that mapping as the user wrote it (without the tags
    pydantic adds to the location of a tagged union's member)."""
    candidates: list[Any] = [model]
    path: list[str] = []
    for part in loc[:-1]:
        nxt: list[Any] = []
        tag = False
        for c in candidates:
            if isinstance(c, type) and issubclass(c, BaseModel):
                field = c.model_fields.get(str(part))
                if field is not None:
                    nxt.extend(_members(field.annotation))
                elif any(part in get_args(m) for f in c.model_fields.values()
                         for m in _members(f.annotation) if get_origin(m) is Literal):
                    nxt.append(c)  # a tagged union's tag: pydantic puts it in the location
                    tag = True
            elif get_origin(c) is dict and len(get_args(c)) == 2:
                nxt.extend(_members(get_args(c)[1]))
            elif get_origin(c) in (list, tuple) and isinstance(part, int) and get_args(c):
                nxt.extend(_members(get_args(c)[0]))
        candidates = nxt
        if not tag:
            path.append(str(part))
    models = {c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)}
    return (list(models.pop().model_fields) if len(models) == 1 else None), path


def unknown_key(loc: Sequence[Any], model: type[BaseModel] | None) -> str:
    """The message of a misspelt key at ``loc``: ``unknown key; did you mean a.b?`` naming
    the nearest valid keys of that mapping (``pruning_core.base.suggest``)."""
    from .base.suggest import did_you_mean

    if model is None or not loc:
        return "unknown key (check the spelling)"
    valid, path = _walk(model, loc)
    if not valid:
        return "unknown key (check the spelling)"
    hint = did_you_mean(str(loc[-1]), valid, "".join(f"{p}." for p in path))
    if hint:
        return f"unknown key; {hint}"
    return f"unknown key (check the spelling); valid: {', '.join(valid)}"


def format_validation_error(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """One line per problem: ``field.path: message``. ``model``: the model validated, for
    the nearest valid names of a misspelt key."""
    parts = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = unknown_key(tuple(err["loc"]), model)
        parts.append(f"{_loc(err)}: {msg}" if err["loc"] else msg)
    return "; ".join(parts)


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """``set_dotted(d, "prune.sparsity", 0.9)`` creating nested dicts as needed."""
    node = data
    parts = key.split(".")
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            nxt = {"name": nxt}  # "allocation: erk" then "allocation.erk_power"
            node[p] = nxt
        node = nxt
    node[parts[-1]] = value


def flatten(d: dict[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """Nested dict -> ``{"a.b": v}``; lists and scalars are leaves."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{sep}{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key, sep))
        else:
            out[key] = v
    return out


# ----------------------------------------------------------------------------- guarded YAML
#: largest YAML file read (configs, spaces and schedules are a few KB)
MAX_YAML_BYTES = 4_000_000
#: most nodes a document may expand to once aliases are followed (alias bombs: 2 KB -> GBs)
MAX_YAML_NODES = 100_000
#: deepest nesting accepted (the parser recurses once per level)
MAX_YAML_DEPTH = 200


def read_text_file(path: str | Path, what: str = "config") -> str:
    """A UTF-8 text file's contents; ``ConfigError`` naming the file for every failure."""
    p = Path(path)
    try:
        if p.is_dir():
            raise ConfigError(f"{what} {p}: is a directory, expected a YAML file")
        if not p.exists():
            raise ConfigError(f"{what} {p}: no such file")
        if not p.is_file():
            raise ConfigError(f"{what} {p}: not a regular file")
        size = p.stat().st_size
        if size > MAX_YAML_BYTES:
            raise ConfigError(f"{what} {p}: {size} bytes is too large for a YAML file "
                              f"(at most {MAX_YAML_BYTES})")
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} {p}: cannot read it ({exc.strerror or exc})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {p}: not UTF-8 text (byte {raw[exc.start]:#04x} at offset "
                          f"{exc.start}); save the file as UTF-8") from None


def parse_yaml(text: str, source: str = "<yaml>") -> tuple[Any, yaml.Node | None]:
    """``yaml.safe_load`` with guards; returns (data, composed node tree).

    Refuses, with a one-line ``ConfigError`` naming ``source``: syntax errors, tags that are not
    plain data (``!!python/...``), duplicate mapping keys (``safe_load`` keeps the last one
    silently), documents that expand to more than ``MAX_YAML_NODES`` nodes through aliases
    (alias bombs) or that are recursive, and nesting deeper than ``MAX_YAML_DEPTH``.
    """
    try:
        # the reader checks the whole text for special characters as it is built: inside the try
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                _check_tree(node, source)
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except ConfigError:
        raise
    except yaml.reader.ReaderError as exc:  # NUL, control characters, ... (no problem_mark)
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        what = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
        raise ConfigError(f"{source} (line {line}): not valid YAML: unacceptable character "
                          f"{what} ({exc.reason}); remove it or quote it as an escape "
                          "like \"\\x00\"") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}{where}: not valid YAML: {problem}".replace("\n", " ")) \
            from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply for a YAML config") from None
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a malformed !!timestamp
        raise ConfigError(f"{source}: not valid YAML: {exc}".replace("\n", " ")) from None
    return data, node


def _check_tree(root: yaml.Node, source: str) -> None:
    """Duplicate keys, expanded size and depth of a composed YAML document (no recursion)."""
    sizes: dict[int, int] = {}  # id(node) -> expanded size; -1 while being expanded
    # iterative post-order walk: (node, key path, children done?)
    stack: list[tuple[yaml.Node, tuple[str, ...], bool]] = [(root, (), False)]
    while stack:
        node, path, done = stack.pop()
        key = id(node)
        children = _children(node, path)
        if done:
            total = 1 + sum(sizes[id(c)] for c, _ in children)
            if total > MAX_YAML_NODES:
                raise ConfigError(
                    f"{source}: more than {MAX_YAML_NODES} values once aliases are expanded "
                    "(an alias bomb?); use fewer aliases or a smaller file")
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if len(path) > MAX_YAML_DEPTH:
            raise ConfigError(f"{source} (line {node.start_mark.line + 1}): nested deeper than "
                              f"{MAX_YAML_DEPTH} levels")
        sizes[key] = -1
        if isinstance(node, yaml.MappingNode):
            _check_duplicates(node, path, source)
        stack.append((node, path, True))
        for c, cpath in children:
            if sizes.get(id(c), 0) < 0:
                raise ConfigError(f"{source} (line {c.start_mark.line + 1}): a recursive "
                                  "alias (an anchor used inside itself)")
            if id(c) not in sizes:
                stack.append((c, cpath, False))


def _children(node: yaml.Node, path: tuple[str, ...]) -> list[tuple[yaml.Node, tuple[str, ...]]]:
    if isinstance(node, yaml.MappingNode):
        out = []
        for k, v in node.value:
            name = str(k.value) if isinstance(k, yaml.ScalarNode) else "?"
            out += [(k, (*path, name)), (v, (*path, name))]
        return out
    if isinstance(node, yaml.SequenceNode):
        return [(c, (*path, str(i))) for i, c in enumerate(node.value)]
    return []


def _check_duplicates(node: yaml.MappingNode, path: tuple[str, ...], source: str) -> None:
    seen: dict[str, int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
            continue
        line = key_node.start_mark.line + 1
        if key_node.value in seen:
            dotted = ".".join((*path, key_node.value))
            raise ConfigError(f"{source}: {dotted} (line {line}): duplicate key (first at line "
                              f"{seen[key_node.value]}); keep one")
        seen[key_node.value] = line


def read_yaml_file(path: str | Path, what: str = "config",
                   mapping: bool = True) -> tuple[Any, yaml.Node | None]:
    """Read and guard-parse a YAML file (``read_text_file`` + ``parse_yaml``).

    With ``mapping`` (the default) the document must be a mapping; an empty file is ``{}``.
    """
    source = f"{what} {path}"
    data, node = parse_yaml(read_text_file(path, what), source)
    if mapping:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping (key: value lines) at the top "
                              f"level, got {type(data).__name__}")
        bad = [k for k in data if not isinstance(k, str)]
        if bad:
            raise ConfigError(f"{source}: top-level key {bad[0]!r} is not a name")
    return data, node


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
