"""The torch module of an ensemble: its members' mean probability, called like a transformers classifier."""

from __future__ import annotations

import torch
from torch import nn

from emocli.model.head_modules import HeadOutput, masked_mean, multilabel_loss

_EPS = 1e-6  # logit(mean) stays finite; sigmoid of it gives the mean back to ~1e-6


class EnsembleModel(nn.Module):
    """Members scored on the same token ids (they share the base's tokenizer); logits = logit(mean sigmoid)."""

    def __init__(self, members: list, spec):
        super().__init__()
        self.members = nn.ModuleList(member.module for member in members)
        self.custom = [m.info.architecture != "transformers" for m in members]
        self.config = spec  # num_labels, id2label, problem_type, like a transformers classifier

    def get_input_embeddings(self):
        return None  # one embedding layer per member: explanations use LIME

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, **_):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        probabilities, pooled = [], []
        for module, custom in zip(self.members, self.custom):
            out = module(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=not custom)
            probabilities.append(torch.sigmoid(out.logits.float()))
            # the pooled embedding, so an ensemble can itself be a stack member
            pooled.append(out.pooled if custom else masked_mean(out.hidden_states[-1], attention_mask.bool()))
        mean = torch.stack(probabilities).mean(0).clamp(_EPS, 1 - _EPS)
        logits = torch.logit(mean)
        return HeadOutput(loss=multilabel_loss(logits, labels), logits=logits,
                          pooled=torch.stack([p.float() for p in pooled]).mean(0))
