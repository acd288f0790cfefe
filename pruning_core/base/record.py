"""What a trial reports, declared once: name, type, better direction, unit, when it is known.

Everything that handles metrics reads this table: the search space's objective check
(``sweeps/tune/space.py``), the Parquet column types (``sweeps/results/store.py``), the recorder's
row, the final report of the trainable. Adding a metric is one :class:`Metric` line here plus the
value in :class:`pruning_core.trials.experiment.TrialResult`; ``tests/test_record.py`` fails when a
reported metric is missing from this table (and so from Parquet).

Types are Arrow type names (``float64``, ``int64``, ``string``) so this module needs neither
pyarrow nor torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["max", "min", ""]
Kind = Literal["float64", "int64", "string"]


@dataclass(frozen=True)
class Metric:
    name: str
    type: Kind = "float64"
    #: which way is better when it is an objective ("" = not a sensible objective)
    better: Direction = ""
    unit: str = ""
    #: reported after every training epoch (an early-stopping scheduler can act on it)
    per_epoch: bool = False
    #: the config setting it needs, said in the objective check's error ("" = always there)
    needs: str = ""
    doc: str = ""


METRICS: tuple[Metric, ...] = (
    Metric("test_accuracy", better="max", per_epoch=True, doc="accuracy on the test split"),
    Metric("test_loss", better="min", per_epoch=True),
    Metric("perplexity", better="min", per_epoch=True,
           doc="exp(test_loss): per-token perplexity of a language model (its loss is the "
               "mean token cross-entropy); for a classifier exp of the per-example loss"),
    Metric("train_accuracy", better="max", per_epoch=True),
    Metric("train_loss", better="min", per_epoch=True),
    Metric("sparsity", better="max", per_epoch=True,
           doc="fraction of prunable weights removed (channel runs: of all Conv/Linear weights)"),
    Metric("target_sparsity", doc="the sparsity the trial aimed at (channel runs: of nodes)"),
    Metric("node_sparsity", better="max", needs="prune.granularity: channel",
           doc="fraction of channels (nodes) removed"),
    Metric("params", "int64", doc="parameters of the dense network"),
    Metric("params_kept", "int64", better="min", doc="parameters left after pruning"),
    Metric("flops_dense", "int64", unit="FLOPs", doc="forward FLOPs per example, dense"),
    Metric("flops", "int64", better="min", unit="FLOPs",
           doc="forward FLOPs per example after pruning (masked layers scaled by density)"),
    Metric("train_flops", "int64", better="min", unit="FLOPs",
           doc="training FLOPs over the whole run (3 x forward per example seen)"),
    Metric("prune_time_s", better="min", unit="s"),
    Metric("train_time_s", better="min", unit="s"),
    Metric("epochs", "int64", doc="training epochs run"),
    Metric("num_classes", "int64", doc="classes of the trial's dataset (the chance rule reads it)"),
    Metric("diverged_epoch", "int64"),
    Metric("n_collapsed", "int64", better="min", doc="layers left with no weight"),
    Metric("similarity_mean", better="max", needs="metrics.similarity",
           doc="mean similarity of the layers to the dense reference"),
    Metric("latency_ms", better="min", unit="ms", needs="metrics.speed",
           doc="inference time of one training-size batch, final network"),
    Metric("latency_ms_batch1", better="min", unit="ms", needs="metrics.speed"),
    Metric("train_step_ms", better="min", unit="ms", needs="metrics.speed"),
    Metric("latency_ms_dense", unit="ms", needs="metrics.speed"),
    Metric("latency_ms_batch1_dense", unit="ms", needs="metrics.speed"),
    Metric("train_step_ms_dense", unit="ms", needs="metrics.speed"),
    Metric("speedup", better="max", needs="metrics.speed",
           doc="dense / final training-step time (median over alternating pairs)"),
    Metric("inference_speedup", better="max", needs="metrics.speed",
           doc="dense / final inference time, training-size batch (median over pairs)"),
    Metric("nm_latency_ms", better="min", unit="ms", needs="metrics.speed",
           doc="prune.pattern 2:4: fp16 inference, Linear layers semi-structured (CUDA only)"),
    Metric("nm_latency_ms_dense", unit="ms", needs="metrics.speed",
           doc="prune.pattern 2:4: the same fp16 network dense"),
    Metric("nm_speedup", better="max", needs="metrics.speed",
           doc="prune.pattern 2:4: dense / semi-structured inference time (median over pairs); "
               "NaN where no semi-structured kernel exists (CPU): never assumed"),
    Metric("nm_speedup_note", "string", needs="metrics.speed",
           doc="what nm_speedup measured, or why it is NaN"),
    Metric("gap_accuracy", better="min", per_epoch=True,
           doc="generalisation gap: train accuracy - test accuracy"),
    Metric("gap_loss", better="min", per_epoch=True,
           doc="generalisation gap: test loss - train loss"),
    Metric("effective_sparsity", better="max",
           doc="fraction of prunable weights on no input->output path or removed"),
    Metric("disconnected_weights", "int64", better="min",
           doc="kept weights that lie on no input->output path"),
    Metric("dead_units", "int64", better="min",
           doc="output units/channels of prunable layers with no live weight"),
    Metric("effective_params", "int64", better="min",
           doc="parameters left once disconnected weights are discounted"),
    Metric("effective_flops", "int64", better="min", unit="FLOPs",
           doc="forward FLOPs per example counting only connected weights"),
    Metric("adv_accuracy", better="max", needs="metrics.adversarial",
           doc="accuracy under the configured attack on a seeded test subset"),
)

BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
#: metrics known after every epoch
EPOCH_METRICS = frozenset(m.name for m in METRICS if m.per_epoch)
#: every scalar metric of a finished trial
FINAL_METRICS = frozenset(BY_NAME)
