"""Text inputs: tokenisation, preceding context for stories, sub-word to word alignment."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["encode_texts", "story_inputs"]


def _is_hf(tokenizer) -> bool:
    return hasattr(tokenizer, "pad_token_id") and callable(tokenizer)


def encode_texts(tokenizer, texts: Sequence[str], *, max_length: int | None = None,
                 spans: Sequence[tuple[int, int]] | None = None) -> tuple[dict[str, Any], Any]:
    """Tokenise ``texts``; return the model inputs and the (B, T) weights of tokens to pool.

    Without ``spans`` every real (non-padding) token is selected. With ``spans`` (character
    ``(start, stop)`` of the target word in each text) only the sub-word tokens that overlap
    the span are selected: the alignment of sub-word tokens to words.
    """
    import torch

    if _is_hf(tokenizer):
        enc = tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt",
                        max_length=max_length, return_offsets_mapping=spans is not None)
        inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        select = enc["attention_mask"].float()
        if spans is not None:
            offsets = enc["offset_mapping"]  # (B, T, 2)
            start = torch.tensor([s for s, _ in spans])[:, None]
            stop = torch.tensor([e for _, e in spans])[:, None]
            nonempty = offsets[..., 1] > offsets[..., 0]
            overlap = (offsets[..., 0] < stop) & (offsets[..., 1] > start) & nonempty
            select = overlap.float() * select
            empty = (select.sum(1) == 0).nonzero().flatten().tolist()
            if empty:
                raise ValueError(
                    f"Word(s) at positions {empty} of the batch map to no token (truncated "
                    "context?). Use a shorter context or a model with a longer input."
                )
        return inputs, select
    if spans is not None:
        raise ValueError(
            "Word-level features need a tokenizer with character offsets (a Hugging Face fast "
            f"tokenizer); got {type(tokenizer).__name__}."
        )
    ids = tokenizer(list(texts))  # open_clip: (B, context_length) tensor, 0 = padding
    mask = (ids != 0).long()
    return {"input_ids": ids, "attention_mask": mask}, mask.float()


def story_inputs(words: Sequence[str], stories: Sequence[Any], positions: Sequence[int],
                 all_words: dict[Any, dict[int, str]], context: int) -> tuple[list[str], list[tuple[int, int]]]:
    """Texts of each target word preceded by up to ``context`` words of its story.

    Returns the texts and the character span of the target word in each.
    """
    texts, spans = [], []
    for word, story, pos in zip(words, stories, positions, strict=True):
        by_pos = all_words[story]
        prev = [by_pos[p] for p in range(max(0, pos - context), pos) if p in by_pos]
        prefix = " ".join(prev)
        start = len(prefix) + (1 if prefix else 0)
        texts.append(f"{prefix} {word}" if prefix else word)
        spans.append((start, start + len(word)))
    return texts, spans
