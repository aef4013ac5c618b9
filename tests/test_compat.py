"""Checkpoints in the on-disk layout of toplib 0.1.0 still load, predict and resume.

The fixture is written here from primitives (Hugging Face ``save_pretrained``,
``torch.save``, ``json``), not with toplib's own save code, so a change to the writer
cannot silently change the reader's expectations with it.
"""
from __future__ import annotations

import json
import os

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from toplib.core.config import PruneConfig
from toplib.hf import ToPModel, load_checkpoint, resolve_model_path
from toplib.infer import prune_forward
from toplib.train import build_train_config, prune, read_history
from toplib.train.objectives import PruneStage

BIN_NUM = 4
LOCATIONS = [1, 2]
RUN = dict(max_train_samples=48, max_eval_samples=24, batch_size=8, eval_batch_size=12, epochs=1,
           warmup_epochs=0.5, eval_steps=2, max_seq_length=32, reg_learning_rate=0.2,
           bin_num=BIN_NUM, sparsity=0.3)
RELEASE_PRUNE = {"prune_location": LOCATIONS, "bin_num": BIN_NUM, "droprate_init": 0.01,
                 "rank_distill_layers": [0]}  # toplib.json's "prune" as 0.1.0 writes it


def write_release_checkpoint(path: str, hf, tokenizer, gates: dict, meta: dict) -> None:
    """A 0.1.0 checkpoint: HF model + tokenizer, gates.pt (two log-alpha tensors),
    toplib.json ({"prune": ..., "stage", "task", "config", "max_seq_length", ...})."""
    hf.save_pretrained(path)
    tokenizer.save_pretrained(path)
    torch.save(gates, os.path.join(path, "gates.pt"))
    with open(os.path.join(path, "toplib.json"), "w") as f:
        json.dump(meta, f)


@pytest.fixture(scope="module")
def release_run(tmp_path_factory):
    """teacher/ (a plain HF classifier) and top/ (best/, last/ with trainer_state.pt)."""
    root = tmp_path_factory.mktemp("release")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(None))
    torch.manual_seed(0)
    hf = BertForSequenceClassification(BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=3,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128))
    hf.save_pretrained(root / "teacher")
    tokenizer.save_pretrained(root / "teacher")
    gates = {"bin_log_alpha": torch.tensor([[4.6, 4.6, -4.6, -4.6], [4.6, -4.6, 4.6, 4.6]]),
             "pruner_log_alpha": torch.tensor([4.6, 4.6])}
    config = build_train_config("rotten_tomatoes", None, RUN)
    meta = {"prune": RELEASE_PRUNE, "stage": "prune", "task": "rotten_tomatoes",
            "teacher": str(root / "teacher"), "config": config.to_dict(), "max_seq_length": 32,
            "step": 4, "results": {}}
    for name in ("best", "last"):
        write_release_checkpoint(str(root / "top" / name), hf, tokenizer, gates, meta)
    return root, config, gates


def test_release_checkpoint_loads_with_its_gates_and_structure(release_run):
    root, _, gates = release_run
    top, tokenizer, meta = load_checkpoint(str(root / "top"))  # a run dir means best/
    assert top.prune == PruneConfig(**RELEASE_PRUNE).resolve(3) and meta["stage"] == "prune"
    for name, value in gates.items():
        assert torch.equal(getattr(top.gates, name).detach(), value), name
    enc = tokenizer(["a film that never quite ends, though it tries hard", "fine"],
                    padding=True, return_tensors="pt")
    with torch.no_grad():
        masked = top(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    dropped = prune_forward(top, enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    torch.testing.assert_close(dropped.logits, masked.logits, atol=1e-5, rtol=0)
    assert torch.equal(dropped.kept, (masked.alive > 0).sum(-1))
    assert dropped.kept[0, -1] < dropped.kept[0, 0]  # the saved gates prune


def test_release_training_state_resumes(release_run):
    root, config, _ = release_run
    top = ToPModel.from_pretrained(str(root / "top" / "last"))
    teacher = ToPModel.from_pretrained(str(root / "teacher"), prune=top.prune)
    stage = PruneStage(top, teacher, config, steps_per_epoch=6)
    state = {"step": 4, "best": None, "last": None, "elapsed": 1.5,  # 0.1.0 trainer_state.pt
             "optimizers": {k: o.state_dict() for k, o in stage.optimizers.items()},
             "schedulers": {k: s.state_dict() for k, s in stage.schedulers.items()},
             "modules": {"lagrangian": stage.lagrangian.state_dict()},
             "rng": {"python": __import__("random").getstate(),
                     "numpy": __import__("numpy").random.get_state(),
                     "torch": torch.get_rng_state()}}
    torch.save(state, root / "top" / "last" / "trainer_state.pt")
    history = [{"step": s, "kind": "train", "loss": 1.0} for s in (1, 4, 5)]  # 5: after the save
    (root / "top" / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    results = prune("rotten_tomatoes", str(root / "teacher"), str(root / "top"), config,
                    progress=False, resume=True)
    assert results["steps"] == 6  # 48 examples / batch 8, one epoch, resumed at step 4
    steps = [r["step"] for r in read_history(str(root / "top"))]
    assert steps[:2] == [1, 4] and 5 not in steps and steps == sorted(steps)  # 5 trimmed
