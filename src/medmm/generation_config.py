"""`GenerationConfig`: the decoding options of medmm's text decoders (beam search, length and
repeat rules), checked by `check()`.

Torch-free and apart from `medmm.models.decoders` (which re-exports it), so that the CLI generates
its decoding flags from these fields and their documented help without importing torch.

    GenerationConfig(beam_size=3, no_repeat_ngram_size=3).check()
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from medmm.errors import MedmmError


@dataclass
class GenerationConfig:
    """Decoding options. The field documentation below is also the help of the decoding flags
    of `medmm predict` / `medmm evaluate` (generated from these fields).

    Attributes:
        beam_size: beam width (1 = greedy).
        length_penalty: finished beams are ranked by sum(log p) / length ** length_penalty
            (> 1 favours longer texts, 0 = raw sum).
        no_repeat_ngram_size: an n-gram may occur at most once in a generated text (0 = off).
        max_length: most generated tokens (EOS excluded).
        min_length: EOS is forbidden before this many tokens.
        repetition_penalty: CTRL's penalty (Keskar et al. 2019): the next-token logit of every
            token already generated is divided by it when positive and multiplied by it when
            negative, before the softmax (1 = off; must be >= 1). A soft brake on any repeat,
            wanted or not.
        no_immediate_repeat: a token may not directly follow itself ("t2 t2"); it may recur later
            ("t2 ... t2"). Hard, but only against consecutive duplicates, which
            no_repeat_ngram_size n >= 2 lets through until a whole n-gram repeats ("t2 t2"
            passes with n = 3).
    """

    beam_size: int = 1
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    max_length: int = 60
    min_length: int = 1
    repetition_penalty: float = 1.0
    no_immediate_repeat: bool = False

    def check(self) -> GenerationConfig:
        """This config when every option is in range; else a MedmmError naming the option."""
        if self.beam_size < 1:
            raise MedmmError(f"beam_size must be >= 1, got {self.beam_size}")
        if self.max_length < 1 or self.min_length < 0 or self.min_length > self.max_length:
            raise MedmmError(f"need 0 <= min_length <= max_length and max_length >= 1, got {self.min_length}, {self.max_length}")
        if self.no_repeat_ngram_size < 0:
            raise MedmmError(f"no_repeat_ngram_size must be >= 0, got {self.no_repeat_ngram_size}")
        rp = self.repetition_penalty
        if isinstance(rp, bool) or not isinstance(rp, (int, float)) or not math.isfinite(rp) or rp < 1.0:
            raise MedmmError(f"repetition_penalty must be a finite number >= 1 (1 = off; below 1 would reward "
                             f"repeats), got {rp!r}")
        if not isinstance(self.no_immediate_repeat, bool):
            raise MedmmError(f"no_immediate_repeat must be true or false, got {self.no_immediate_repeat!r}")
        return self


__all__ = ["GenerationConfig"]
