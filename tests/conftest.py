"""Shared tiny-model fixtures: random-initialised BERT/RoBERTa classifiers built in code."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the hub from a unit test

import pytest
import torch
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

# Tiny tensors gain nothing from intra-op threads, and spinning thread pools slow every op
# by orders of magnitude when several test processes share the 2 CPU cores.
torch.set_num_threads(1)

VOCAB = 100
SEQ_LEN = 12
REAL_LENGTHS = (12, 9, 5)  # one full row, two padded rows
FAMILIES = {
    "bert": (BertConfig, BertForSequenceClassification),
    "roberta": (RobertaConfig, RobertaForSequenceClassification),
}


def tiny_config(family: str = "bert", num_layers: int = 4, **overrides):
    """A 4-layer, hidden-32 config without dropout, so train and eval passes compare."""
    config_cls, _ = FAMILIES[family]
    values = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=num_layers,
                  num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                  num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return config_cls(**{**values, **overrides})


def tiny_classifier(family: str = "bert", seed: int = 0, **overrides):
    """Random-initialised ``*ForSequenceClassification`` in eval mode."""
    torch.manual_seed(seed)
    _, model_cls = FAMILIES[family]
    return model_cls(tiny_config(family, **overrides)).eval()


def padded_batch(config, lengths=REAL_LENGTHS, seq_len=SEQ_LEN, seed: int = 1):
    """(input_ids, attention_mask) with ``lengths`` real tokens per row, the rest padding."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, config.vocab_size, (len(lengths), seq_len), generator=gen)
    mask = (torch.arange(seq_len)[None, :] < torch.tensor(lengths)[:, None]).long()
    ids = ids.masked_fill(mask == 0, config.pad_token_id)
    return ids, mask


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(params=sorted(FAMILIES))
def family(request) -> str:
    return request.param


# ---- tiny training runs (shared by the training, checkpoint and hostile-input tests) ----
TINY = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=128)
RUN = dict(max_train_samples=48, max_eval_samples=24, batch_size=8, eval_batch_size=12,
           finetune_epochs=1, epochs=1, warmup_epochs=0.5, eval_steps=2, max_seq_length=32,
           reg_learning_rate=0.2, bin_num=4)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A random tiny BERT with the real bert-base-uncased tokenizer, saved locally."""
    path = tmp_path_factory.mktemp("tiny-bert")
    from toplib.hf.model import resolve_model_path
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(None))
    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(vocab_size=tokenizer.vocab_size, **TINY)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def teacher_dir(tiny_model_dir, tmp_path_factory):
    """A finished (tiny) teacher run on rotten_tomatoes."""
    from toplib.train import finetune
    from toplib.train.config import build_train_config
    out = str(tmp_path_factory.mktemp("runs") / "teacher")
    finetune("rotten_tomatoes", out, model=tiny_model_dir,
             config=build_train_config("rotten_tomatoes", None, RUN), progress=False)
    return out
