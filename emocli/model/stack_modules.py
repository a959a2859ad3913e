"""The torch modules of a stack: the BiLSTM meta-learner and the stack (frozen members + meta-learner)."""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import nn

from emocli.model.head_modules import HeadOutput, masked_mean, multilabel_loss


class StackMeta(nn.Module):
    """Member vectors -> (per member: LayerNorm, projection) -> a sequence over members -> BiLSTM -> labels."""

    def __init__(self, feature_dims: list[int], num_labels: int, project_dim: int, lstm_hidden: int,
                 dropout: float):
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(d) for d in feature_dims)
        self.projections = nn.ModuleList(nn.Linear(d, project_dim) for d in feature_dims)
        self.lstm = nn.LSTM(project_dim, lstm_hidden, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * lstm_hidden, num_labels)

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        steps = [torch.tanh(proj(norm(f))) for f, norm, proj in zip(features, self.norms, self.projections)]
        _, (hidden, _) = self.lstm(self.dropout(torch.stack(steps, dim=1)))
        pooled = torch.cat([hidden[0], hidden[1]], dim=-1)  # last forward and last backward state
        return self.classifier(self.dropout(pooled)), pooled


class StackModel(nn.Module):
    """Frozen members + the meta-learner, called like a transformers classifier on the first member's ids."""

    def __init__(self, members: list, meta: StackMeta | None, tokenizer, spec: Any):
        super().__init__()
        self.members = nn.ModuleList(member.module for member in members)
        self.members.requires_grad_(False)
        self.meta = meta
        self.tokenizer = tokenizer
        self.member_tokenizers = [None if same_tokenizer(tokenizer, m.tokenizer) else (m.tokenizer, m.info.max_length)
                                  for m in members]
        self.custom = [m.info.architecture != "transformers" for m in members]
        self.config = spec

    def get_input_embeddings(self):
        return None  # no single embedding layer: explanations use LIME

    def train(self, mode: bool = True):
        super().train(mode)
        self.members.eval()  # members stay frozen, dropout off
        return self

    def member_features(self, input_ids, attention_mask=None) -> list[torch.Tensor]:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        texts = None
        features = []
        for module, retokenize, custom in zip(self.members, self.member_tokenizers, self.custom):
            ids, mask = input_ids, attention_mask
            if retokenize is not None:
                if texts is None:
                    texts = self.tokenizer.batch_decode(input_ids, skip_special_tokens=True)
                member_tokenizer, max_length = retokenize
                encoded = member_tokenizer(texts, truncation=True, max_length=max_length, padding=True,
                                           return_tensors="pt")
                ids, mask = encoded["input_ids"].to(input_ids.device), encoded["attention_mask"].to(input_ids.device)
            with torch.no_grad():
                out = module(input_ids=ids, attention_mask=mask, output_hidden_states=not custom)
                pooled = out.pooled if custom else masked_mean(out.hidden_states[-1], mask.bool())
                features.append(torch.cat([pooled, out.logits], dim=-1).float())
        return features

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, **_):
        dtype = next(self.meta.parameters()).dtype  # bf16/fp16 when loaded so on a GPU; features come as fp32
        logits, pooled = self.meta([f.to(dtype) for f in self.member_features(input_ids, attention_mask)])
        return HeadOutput(loss=multilabel_loss(logits, labels), logits=logits, pooled=pooled)


def same_tokenizer(a, b) -> bool:
    """Two tokenizers that give the same ids for every text (same fast-tokenizer model, normaliser, specials)."""
    def canonical(tokenizer):
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            return None
        data = json.loads(backend.to_str())
        data.pop("truncation", None)
        data.pop("padding", None)
        return data

    first = canonical(a)
    return first is not None and first == canonical(b)
