"""Self-critical sequence training (SCST) of the report decoder: the loss of one batch.

Rennie et al. 2017, with the baseline of Luo 2020: for each study, `n` texts are sampled from the
decoder; each is rewarded by its CIDEr-D against the study's own report (`CiderConsensus`, IDF of
the training reports), optionally plus a weight x its attribute consistency with the study's
REFERENCE attributes (`grounding.AttributeLexicon`: a penalty for naming a wrong modality,
plane or location). The advantage of a sample is its reward minus the mean reward of the other
n - 1 samples; the loss is REINFORCE averaged over the sampled tokens. The task
(`task.py`) uses it in training mode when ``scst.samples > 0``; validation stays
cross-entropy.

    loss = self_critical_loss(decoder, memory, pad, references, tokenizer, consensus, generation, 5, out)
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medmm.models.decoders import (
    GenerationConfig,
    WordTokenizer,
    join_tokens,
    sample_decode,
    sequence_logprobs,
)
from medmm.tasks.report.grounding import AttributeLexicon
from medmm.tasks.report.mbr import CiderConsensus

if TYPE_CHECKING:
    from medmm.models.prefix_lm import HFTokenizer


def reference_probs(attributes: dict[str, list[str]], classes: list[int], smoothing: float = 0.05) -> dict[str, np.ndarray]:
    """A study's reference attribute classes (one index per target of `attributes`, -1 =
    unknown) as smoothed one-hot distributions over each target's classes; unknown ones left out."""
    out = {}
    for (t, names), k in zip(attributes.items(), classes, strict=False):
        if k >= 0:
            p = np.full(len(names), smoothing / max(len(names) - 1, 1))
            p[k] = 1.0 - smoothing
            out[t] = p
    return out


def self_critical_loss(decoder: torch.nn.Module, memory: torch.Tensor, pad: torch.Tensor, references: list[str],
                       tokenizer: WordTokenizer | HFTokenizer, consensus: CiderConsensus, generation: GenerationConfig, n: int,
                       out: dict[str, Any], lexicon: AttributeLexicon | None = None,
                       attributes: dict[str, list[str]] | None = None, reference_classes: torch.Tensor | None = None,
                       attribute_weight: float = 0.0) -> torch.Tensor:
    """REINFORCE with CIDEr-D rewards and the other samples' mean as baseline, averaged over
    the sampled tokens (texts are sampled under the decoding rules, scored with gradients).

    decoder: any report decoder (the word decoder or a causal-LM prefix decoder); memory, pad:
    the decoder memory of B studies; references: their report texts; n (>= 2):
    samples per study. With `attribute_weight`, a `lexicon` and `reference_classes` (B, targets)
    class indices of `attributes` (target -> classes), the attribute consistency is added to the
    reward. Logs "reward", "sample_length" (and "attribute_consistency") into `out`.
    """
    # the inference-only repeat rules are off: the policy is scored (sequence_logprobs) as the
    # decoder's own distribution, and the stutter it is penalised for must be sampled to be seen
    cfg = replace(generation, beam_size=1, repetition_penalty=1.0, no_immediate_repeat=False)
    texts = sample_decode(decoder, memory.detach(), pad, cfg, n)
    mem = memory.repeat_interleave(n, dim=0)
    mpad = pad.repeat_interleave(n, dim=0)
    logp, lengths = sequence_logprobs(decoder, mem, mpad, texts, cfg.max_length)
    words = [join_tokens(tokenizer.decode_tokens(t)) for t in texts]
    rewards = [consensus.similarity(w, references[i // n]) for i, w in enumerate(words)]
    if attribute_weight and reference_classes is not None and lexicon is not None and attributes is not None:
        truth = [reference_probs(attributes, row) for row in reference_classes.tolist()]
        cons = [lexicon.consistency(w, truth[i // n]) for i, w in enumerate(words)]
        rewards = [r + attribute_weight * k for r, k in zip(rewards, cons, strict=True)]
        out["attribute_consistency"] = torch.tensor(sum(cons) / len(cons))
    reward = torch.tensor(rewards, device=logp.device).view(-1, n)
    baseline = (reward.sum(1, keepdim=True) - reward) / (n - 1)
    adv = (reward - baseline).reshape(-1)
    out["reward"] = reward.mean()
    out["sample_length"] = lengths.float().mean()
    return -(adv * logp).sum() / lengths.sum().clamp(min=1)


__all__ = ["reference_probs", "self_critical_loss"]
