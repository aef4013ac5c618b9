"""`toplib convert-release`: the authors' released ToP checkpoints (microsoft/Moonlit) become
toplib checkpoints, their ``l0_module.pt`` read without importing or running anything it
names. Every release folder here is built in the test: a tiny BERT saved as the release
saves it, and an ``l0_module.pt`` pickled from a class posing as ``models.l0_module``."""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import subprocess
import sys
import types

import pytest
import torch
from conftest import SEQ_LEN, padded_batch, tiny_classifier, tiny_config

from toplib.cli import main
from toplib.hf.checkpoint import CheckpointError, verify_checkpoint
from toplib.hf.model import load_checkpoint
from toplib.hf.release import convert_release, read_release_gates
from toplib.infer.engine import prune_forward
from toplib.train.config import TrainConfig

LAYERS = 4  # conftest's tiny BERT
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(95)]


# ---- the release's evaluation-gate rule, restated from ToP/models/l0_module.py -----------
def release_z(size: int, loga: torch.Tensor, temperature: float) -> torch.Tensor:
    """``L0Module._deterministic_z``: k = round(size - sum(1 - cdf_qz(0, loga))) gates with
    the smallest sigmoid(loga / T * 0.8) close (a 0-d loga: closed iff k > 0)."""
    xn = 0.1 / 1.2  # (0 - limit_a) / (limit_b - limit_a)
    cdf = torch.sigmoid((math.log(xn) - math.log(1 - xn)) * temperature - loga)
    k = round(size - float((1 - cdf.clamp(1e-6, 1 - 1e-6)).sum()))
    soft = torch.sigmoid(loga / temperature * 0.8)
    if k > 0 and soft.ndim == 0:
        soft = torch.tensor(0.0)
    elif k > 0:
        soft = soft.clone()
        soft[torch.topk(soft, k=k, largest=False).indices] = 0.0
    return (soft > 0).float()


def release_gates(token_loga, pruner_loga, temperature):
    """``L0Module.forward(training=False)``: one row per prune layer of ``sizes['token']``
    bins; the pruner log-alphas are walked element by element, each of size 1."""
    token = torch.stack([release_z(token_loga.shape[1], row, temperature) for row in token_loga])
    return token, torch.stack([release_z(1, a, temperature) for a in pruner_loga])


# ---- building a release folder ----------------------------------------------------------
class ReleaseL0(torch.nn.Module):
    """The pickled state of the release's ``L0ModuleForMAC(pruning_type='token+pruner')``."""

    def __init__(self, config, token_loga, pruner_loga, temperature=2.0 / 3.0, **extra):
        super().__init__()
        n, self.bin_num = token_loga.shape
        self.config, self.pruning_type, self.types = config, "token+pruner", ["token", "pruner"]
        self.token_prune_loc = list(range(LAYERS - len(pruner_loga), LAYERS))
        self.temperature, self.magical_number, self.droprate_init = temperature, 0.8, 0.01
        self.token_loga = torch.nn.Parameter(token_loga.clone())
        self.pruner_loga = torch.nn.Parameter(pruner_loga.clone())
        self.z_logas = {"token": self.token_loga, "pruner": self.pruner_loga}
        self.sizes, self.shapes = {"token": self.bin_num, "pruner": 1}, {"token": [n, self.bin_num]}
        self.lambda_1 = torch.nn.Parameter(torch.tensor(0.0))
        self.lambda_2 = torch.nn.Parameter(torch.tensor(0.0))
        self.lambda_3 = torch.tensor(0.0)
        self.__dict__.update(extra)  # a test's own additions (an inconsistent bin_num, a payload)


@contextlib.contextmanager
def posing_as_release(*names: str):
    """Classes named ``models.l0_module.<name>``, importable only inside the block: pickle
    looks a class up by module and name when saving; after it, no load can import them."""
    saved = {k: sys.modules.get(k) for k in ("models", "models.l0_module")}
    package, module = types.ModuleType("models"), types.ModuleType("models.l0_module")
    package.l0_module = module
    classes = [type(name, (ReleaseL0,), {"__module__": "models.l0_module"}) for name in names]
    for cls in classes:
        setattr(module, cls.__name__, cls)
    sys.modules.update({"models": package, "models.l0_module": module})
    try:
        yield classes
    finally:
        for key, value in saved.items():
            if value is None:
                del sys.modules[key]
            else:
                sys.modules[key] = value


def save_l0(path, token_loga, pruner_loga, temperature=2.0 / 3.0, cls_name="L0ModuleForMAC",
            **extra):
    config = tiny_config("bert")
    config.torch_dtype = torch.float32  # the release's config keeps a torch dtype
    with posing_as_release(cls_name) as (cls,):
        torch.save(cls(config, token_loga, pruner_loga, temperature, **extra), path)


# Prune layers 1..3; only layer 2 prunes (pruner gates 0, 1, 0), no two log-alphas tie.
TOKEN_LOGA = torch.tensor([[3.0, -3.0, 2.0, -2.0, 1.0], [4.0, 3.0, 2.0, -1.0, -4.0],
                           [-3.0, -3.1, -2.9, 3.0, 3.2]])
PRUNER_LOGA = torch.tensor([-3.0, 3.0, -3.0])
# Prune layers 2..3 from a zs.pt; only layer 2 prunes.
ZS = {"token_z": torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0]]),
      "pruner_z": torch.tensor([True, False])}


def make_release(root, kind: str = "l0", temperature: float = 2.0 / 3.0):
    """A release folder (``kind``: gates in 'l0' = l0_module.pt or 'zs' = zs.pt); returns
    (folder, (token_z, pruner_z) the release's evaluation gates)."""
    os.makedirs(root)
    model = tiny_classifier("bert", num_labels=2, finetuning_task="sst2")
    model.config.save_pretrained(root)
    config_file = os.path.join(root, "config.json")
    with open(config_file) as f:  # what the release's config.json adds (its distillation)
        config = dict(json.load(f), output_attentions=True, output_hidden_states=True,
                      do_layer_distill=False, architectures=["ToPBertForSequenceClassification"])
    with open(config_file, "w") as f:
        json.dump(config, f)
    extra = {"layer_transformation.weight": torch.eye(32)}  # the release's distill layer
    torch.save(dict(model.state_dict(), **extra), os.path.join(root, "pytorch_model.bin"))
    with open(os.path.join(root, "vocab.txt"), "w") as f:
        f.write("\n".join(WORDS) + "\n")
    if kind == "zs":
        torch.save(ZS, os.path.join(root, "zs.pt"))
        return str(root), (ZS["token_z"], ZS["pruner_z"].float())
    save_l0(os.path.join(root, "l0_module.pt"), TOKEN_LOGA, PRUNER_LOGA, temperature)
    return str(root), release_gates(TOKEN_LOGA, PRUNER_LOGA, temperature)


# ---- round trips --------------------------------------------------------------------------
@pytest.mark.parametrize("kind, temperature", [("l0", 2.0 / 3.0), ("l0", 0.5), ("zs", 2.0 / 3.0)],
                         ids=["l0_module.pt", "l0_module.pt at T=0.5", "zs.pt"])
def test_release_converts_and_keeps_its_gates(tmp_path, kind, temperature):
    src, (token_z, pruner_z) = make_release(tmp_path / "release", kind, temperature)
    assert pruner_z.tolist().count(1.0) == 1 and 0 < token_z[pruner_z.argmax()].sum() < 5
    read = read_release_gates(src)
    assert torch.equal(read[0], token_z) and torch.equal(read[1], pruner_z)

    out = convert_release(src, tmp_path / "top")
    top, _, meta = load_checkpoint(out)
    z_bins, z_pruner = top.gates(training=False)
    assert torch.equal(z_bins, token_z) and torch.equal(z_pruner, pruner_z)
    n = len(pruner_z)
    assert top.prune.prune_location == tuple(range(LAYERS - n, LAYERS))
    assert top.prune.bin_num == token_z.shape[1] and top.prune.importance_rows == "all"
    assert (meta["stage"], meta["task"]) == ("prune", "sst2")
    assert not (top.config.output_attentions or top.config.output_hidden_states)
    run = TrainConfig.from_dict(meta["config"])
    assert (run.max_seq_length, run.pad_to_max_length) == (256, True)
    weights = torch.load(os.path.join(src, "pytorch_model.bin"), weights_only=True)
    for key in ("bert.encoder.layer.3.output.dense.weight", "classifier.weight"):
        assert torch.equal(top.model.state_dict()[key], weights[key])

    # Unpadded inputs and one pruning layer: "all"-rows importance is the same either way.
    ids, mask = padded_batch(top.config, lengths=(SEQ_LEN,) * 3)
    masked = top(ids, mask)
    dropped = prune_forward(top, ids, mask)
    assert torch.allclose(masked.logits, dropped.logits, atol=1e-4)
    assert torch.equal((masked.alive > 0).sum(-1), dropped.kept)
    assert (dropped.kept[:, -1] < SEQ_LEN).all()  # tokens were pruned


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("temperature", [2.0 / 3.0, 0.5])
def test_gates_follow_the_release_rule(tmp_path, seed, temperature):
    """Continuous random log-alphas (no ties): rows of bins and single pruner gates."""
    gen = torch.Generator().manual_seed(seed)
    token, pruner = torch.randn(3, 7, generator=gen) * 2.5, torch.randn(3, generator=gen) * 2.5
    save_l0(tmp_path / "l0_module.pt", token, pruner, temperature)
    expected = release_gates(token, pruner, temperature)
    got = read_release_gates(tmp_path)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


# ---- hostile pickles --------------------------------------------------------------------
class Payload:
    """Unpickles as ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def hostile(case: str, marker: str):
    """(object to pickle, the global an unpickler meets, or None for the class case)."""
    return {"os.system": (Payload(os.system, f"touch {marker}"), f"{os.system.__module__}.system"),
            "builtins.eval": (Payload(eval, f"open({marker!r}, 'w')"), "builtins.eval"),
            "subprocess.Popen": (Payload(subprocess.Popen, ["touch", marker]),
                                 "subprocess.Popen")}.get(case, (None, None))


CASES = ["os.system", "builtins.eval", "subprocess.Popen", "another models.l0_module class"]


@pytest.mark.parametrize("where", ["inside the module", "whole file"])
@pytest.mark.parametrize("case", CASES)
def test_foreign_globals_are_refused_and_never_run(tmp_path, case, where):
    marker, path = tmp_path / "pwned", tmp_path / "l0_module.pt"
    payload, name = hostile(case, str(marker))
    if payload is None:  # a class of the release's module other than L0ModuleForMAC
        name = "models.l0_module.Anything_else"
        save_l0(path, TOKEN_LOGA, PRUNER_LOGA, cls_name="Anything_else")
    elif where == "whole file":
        torch.save(payload, path)
    else:
        save_l0(path, TOKEN_LOGA, PRUNER_LOGA, hook=payload)
    with pytest.raises(CheckpointError, match=re.escape(name)) as err:
        read_release_gates(tmp_path)
    assert str(path) in str(err.value) and not marker.exists()


def test_the_hostile_file_is_live(tmp_path):
    """The control: an unrestricted load of the same file runs the command."""
    marker = tmp_path / "pwned"
    torch.save(hostile("os.system", str(marker))[0], tmp_path / "l0_module.pt")
    torch.load(tmp_path / "l0_module.pt", weights_only=False)
    assert marker.exists()


# ---- damaged and inconsistent folders -----------------------------------------------------
def _truncate(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[:len(data) // 2])


def _write(name, obj):
    def mutate(src):
        target = os.path.join(src, name)
        if isinstance(obj, bytes):
            open(target, "wb").write(obj)
        else:
            torch.save(obj, target)
    return mutate


def _drop_weight(src):
    path = os.path.join(src, "pytorch_model.bin")
    state = torch.load(path, weights_only=True)
    del state["classifier.weight"]
    torch.save(state, path)


def _model_type(src):
    path = os.path.join(src, "config.json")
    config = json.load(open(path))
    json.dump(dict(config, model_type="roberta"), open(path, "w"))


def _bad_bin_num(src):
    save_l0(os.path.join(src, "l0_module.pt"), TOKEN_LOGA, PRUNER_LOGA, bin_num=7)


BROKEN = {  # id: (gates of the base folder, damage, what the error says)
    "missing folder": ("zs", lambda src: os.rename(src, src + "-gone"), "does not exist"),
    "no tokenizer": ("zs", lambda src: os.remove(os.path.join(src, "vocab.txt")),
                     "holds no tokenizer"),
    "no weights": ("zs", lambda src: os.remove(os.path.join(src, "pytorch_model.bin")),
                   "holds no weights"),
    "no gates": ("l0", lambda src: os.remove(os.path.join(src, "l0_module.pt")),
                 "holds no gates: neither zs.pt nor l0_module.pt"),
    "missing weight": ("zs", _drop_weight, "lacks 1 weight"),
    "not BERT": ("zs", _model_type, "model_type 'roberta'"),
    "truncated zs.pt": ("zs", lambda src: _truncate(os.path.join(src, "zs.pt")), "zs.pt"),
    "truncated l0_module.pt": ("l0", lambda src: _truncate(os.path.join(src, "l0_module.pt")),
                               "l0_module.pt"),
    "garbage l0_module.pt": ("l0", _write("l0_module.pt", b"not a pickle"), "l0_module.pt"),
    "truncated weights": ("zs", lambda src: _truncate(os.path.join(src, "pytorch_model.bin")),
                          "pytorch_model.bin"),
    "garbage config.json": ("zs", _write("config.json", b"{not json"), "config.json"),
    "zs.pt not a dict": ("zs", _write("zs.pt", [1, 2]), "not the release's zs.pt"),
    "rows != pruners": ("zs", _write("zs.pt", {"token_z": torch.ones(2, 4),
                                               "pruner_z": torch.ones(3)}), "disagree"),
    "too many layers": ("zs", _write("zs.pt", {"token_z": torch.ones(4, 4),
                                               "pruner_z": torch.ones(4)}),
                        "prune 4 layers of 4"),
    "gates not 0/1": ("zs", _write("zs.pt", {"token_z": torch.full((2, 4), 0.5),
                                             "pruner_z": torch.ones(2)}), "not all 0 or 1"),
    "bin_num disagrees": ("l0", _bad_bin_num, "do not fit bin_num=7"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_broken_release_is_a_named_error(tmp_path, case):
    kind, damage, message = BROKEN[case]
    src, _ = make_release(tmp_path / "release", kind)
    damage(src)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        convert_release(src, tmp_path / "top")
    assert not (tmp_path / "top").exists()


def test_existing_output_is_kept_unless_overwritten(tmp_path):
    src, _ = make_release(tmp_path / "release", "zs")
    (tmp_path / "top").mkdir()
    (tmp_path / "top" / "keep.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="exists"):
        convert_release(src, tmp_path / "top")
    assert (tmp_path / "top" / "keep.txt").exists()
    verify_checkpoint(convert_release(src, tmp_path / "top", overwrite=True))


# ---- the command line -----------------------------------------------------------------------
def test_command_line(tmp_path, capsys):
    src, _ = make_release(tmp_path / "release", "l0")
    assert main(["convert-release", src, str(tmp_path / "top"), "--task", "SST-2"]) == 0
    assert json.load(open(tmp_path / "top" / "toplib.json"))["task"] == "sst2"
    capsys.readouterr()
    assert main(["convert-release", str(tmp_path / "nope"), str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "does not exist" in err and "\n" not in err and "Traceback" not in err


def _without_finetuning_task(src):
    """config.json as a transformers >= 5 save writes it: no ``finetuning_task``."""
    path = os.path.join(src, "config.json")
    config = json.load(open(path))
    config.pop("finetuning_task", None)
    json.dump(config, open(path, "w"))


@pytest.mark.parametrize("kind", ["l0", "zs"])
def test_a_config_without_finetuning_task_takes_the_task_given(tmp_path, kind):
    src, (token_z, _) = make_release(tmp_path / "release", kind)
    assert "finetuning_task" in json.load(open(os.path.join(src, "config.json")))  # the control
    _without_finetuning_task(src)
    assert main(["convert-release", src, str(tmp_path / "top"), "--task", "SST-2"]) == 0
    top, _, meta = load_checkpoint(str(tmp_path / "top"))
    assert meta["task"] == "sst2" and torch.equal(top.gates(training=False)[0], token_z)


def test_a_config_without_finetuning_task_and_no_task_is_refused(tmp_path, capsys):
    src, _ = make_release(tmp_path / "release", "l0")
    _without_finetuning_task(src)
    with pytest.raises(CheckpointError, match="--task"):
        convert_release(src, tmp_path / "top")
    assert not (tmp_path / "top").exists()
    assert main(["convert-release", src, str(tmp_path / "top")]) == 2
    err = capsys.readouterr().err.strip()
    assert "finetuning_task" in err and "--task" in err and "Traceback" not in err
    assert not (tmp_path / "top").exists()
