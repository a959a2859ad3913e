"""The torch modules behind emocli's custom architectures (imported only when a model is built or loaded).

Every module takes `forward(input_ids, attention_mask, token_type_ids=None, **kw)` like a transformers
sequence classifier and returns a `HeadOutput` with `.logits` (one per label) and `.pooled` (a text
embedding, for contrastive losses and stacking). Padding never changes a text's logits: padded positions
are zeroed before the convolutions, skipped by the BiLSTM (packed sequences) and masked in attention.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers.utils import ModelOutput


@dataclass
class HeadOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    pooled: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None  # (token states,) when output_hidden_states=True


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=dim)


def masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(states.dtype)
    return (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def multilabel_loss(logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor | None:
    """What a transformers classifier returns when called with labels: mean BCE over labels."""
    if labels is None:
        return None
    return F.binary_cross_entropy_with_logits(logits.float(), labels.to(logits.device).float())


class AttentionPooling(nn.Module):
    """Additive attention over positions: one weight per token, padded tokens get none."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.score = nn.Linear(dim, 1, bias=False)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(torch.tanh(self.proj(states))).squeeze(-1)
        weights = masked_softmax(scores, mask, dim=1)
        return torch.einsum("bl,bld->bd", weights, states)


class ConvBiLstmAttention(nn.Module):
    """Token vectors -> 1-D convolutions of several widths -> BiLSTM -> attention pooling -> label logits."""

    def __init__(self, in_dim: int, num_labels: int, kernel_sizes=(2, 3, 4), conv_channels: int = 128,
                 lstm_hidden: int = 128, dropout: float = 0.1):
        super().__init__()
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)
        self.convs = nn.ModuleList(nn.Conv1d(in_dim, conv_channels, k) for k in self.kernel_sizes)
        self.lstm = nn.LSTM(conv_channels * len(self.kernel_sizes), lstm_hidden, batch_first=True,
                            bidirectional=True)
        self.attention = AttentionPooling(2 * lstm_hidden)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * lstm_hidden, num_labels)

    def _convolve(self, states: torch.Tensor) -> torch.Tensor:
        x = states.transpose(1, 2)  # (B, D, L)
        outputs = []
        for kernel, conv in zip(self.kernel_sizes, self.convs):
            # zero padding on both sides keeps length L; padded tokens are already zero, so a text
            # padded to any length sees exactly the zeros it would see on its own
            outputs.append(F.relu(conv(F.pad(x, ((kernel - 1) // 2, kernel // 2)))))
        return torch.cat(outputs, dim=1).transpose(1, 2)  # (B, L, C*K)

    def _bilstm(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits, pooled, BiLSTM token states)."""
        states = states * mask.unsqueeze(-1).to(states.dtype)
        features = self.dropout(self._convolve(states))
        sequence = self._bilstm(features, mask)
        pooled = self.attention(sequence, mask)
        return self.classifier(self.dropout(pooled)), pooled, sequence


class LabelAttention(nn.Module):
    """One learned query per label: each label pools the tokens that matter to it, then scores its own pool."""

    def __init__(self, in_dim: int, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.keys = nn.Linear(in_dim, in_dim)
        self.queries = nn.Parameter(torch.randn(num_labels, in_dim) * in_dim ** -0.5)
        self.dropout = nn.Dropout(dropout)
        self.label_weight = nn.Parameter(torch.randn(num_labels, in_dim) * in_dim ** -0.5)
        self.label_bias = nn.Parameter(torch.zeros(num_labels))

    def label_weights(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, num_labels, L): how much each token counts for each label."""
        scores = torch.einsum("bld,cd->bcl", torch.tanh(self.keys(states)), self.queries)
        return masked_softmax(scores, mask.unsqueeze(1), dim=-1)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits, pooled, token states)."""
        per_label = torch.einsum("bcl,bld->bcd", self.label_weights(states, mask), states)
        logits = (self.dropout(per_label) * self.label_weight).sum(-1) + self.label_bias
        return logits, masked_mean(states, mask), states


class EncoderWithHead(nn.Module):
    """A transformer encoder's token states fed to a custom head."""

    base_model_prefix = "encoder"  # as in transformers: the pretrained part (--head-lr trains the rest)

    def __init__(self, encoder: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, output_hidden_states=False,
                **_):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        return _output(*self.head(states, attention_mask.bool()), labels, output_hidden_states)


class SmallClassifier(nn.Module):
    """Subword embeddings (no transformer) -> ConvBiLstmAttention: the small, fast model."""

    def __init__(self, vocab_size: int, embedding_dim: int, num_labels: int, pad_token_id: int = 0, **block):
        super().__init__()
        self.embeddings = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_token_id)
        self.block = ConvBiLstmAttention(embedding_dim, num_labels, **block)

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, output_hidden_states=False,
                **_):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return _output(*self.block(self.embeddings(input_ids), attention_mask.bool()), labels, output_hidden_states)


def _output(logits, pooled, sequence, labels, output_hidden_states: bool) -> HeadOutput:
    return HeadOutput(loss=multilabel_loss(logits, labels), logits=logits, pooled=pooled,
                      hidden_states=(sequence,) if output_hidden_states else None)


def reduce_embeddings(matrix: torch.Tensor, dim: int) -> torch.Tensor:
    """Project a pretrained embedding matrix onto its `dim` principal directions (keeps most of its geometry)."""
    matrix = matrix.detach().float()
    if dim >= matrix.shape[1]:
        return matrix.clone()
    centered = matrix - matrix.mean(0, keepdim=True)
    _, vectors = torch.linalg.eigh(centered.T @ centered)  # ascending eigenvalues: the last are the principal
    reduced = centered @ vectors[:, -dim:].flip(1)
    return reduced * (matrix.std() / reduced.std())  # keep the original scale for the convolutions
