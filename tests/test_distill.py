"""`textcls distill`: augmentation, the loss, the config section, the teacher cache, the student run directory,
exact resume, bad input, the recipe-sized student."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file

from conftest import interrupt_at, run_cli, sst2_slice, tiny_config, tiny_model, write_tsv
from textcls.config import config_from_dict, config_to_dict, load_config
from textcls.data.pipeline import encode_texts
from textcls.data.readers import Record
from textcls.device import resolve_precision
from textcls.distill import distill
from textcls.distill.augment import augment_texts, training_vocabulary
from textcls.distill.student import student_sections
from textcls.distill.task import NO_LABEL, distill_loss
from textcls.distill.teacher import Teacher, load_teacher
from textcls.errors import CheckpointError, ConfigError, DataError
from textcls.predictor import run_predictor
from textcls.recipe.rules import Machine, auto_recipe
from textcls.recipe.stats import data_stats
from textcls.run.load import load_run, run_digest
from textcls.train.loop import Interrupted, train

# --------------------------------------------------------------------------- augmentation


def test_augmented_copies_are_deterministic_and_change_words():
    texts = [f"the film number {i} was a fine and moving story" for i in range(50)]
    vocab = training_vocabulary(texts)
    assert vocab == sorted(set(vocab)) and "film" in vocab
    one = augment_texts(texts, 2, 0.3, seed=7, mask_token="[MASK]", vocabulary=vocab)
    assert one == augment_texts(texts, 2, 0.3, seed=7, mask_token="[MASK]", vocabulary=vocab)
    assert one != augment_texts(texts, 2, 0.3, seed=8, mask_token="[MASK]", vocabulary=vocab)
    assert len(one) == 100 and one[:50] != one[50:]  # copy 1, then copy 2, each its own
    changed = sum(a != t for a, t in zip(one, texts + texts))
    assert changed > 80  # 10 words at 0.3 each: nearly every copy differs
    assert any("[MASK]" in a for a in one)
    assert any(len(a.split()) < 10 for a in one)  # deletions
    words = {w for a in one for w in a.split()}
    assert words <= set(vocab) | {"[MASK]"}  # replacements come from the training vocabulary
    assert augment_texts(texts, 0, 0.3, 0, "[MASK]", vocab) == []
    assert all(a for a in augment_texts(["a"] * 200, 1, 0.99, 0, "[MASK]", ["b"]))  # never empty


# --------------------------------------------------------------------------- the loss


def test_the_loss_mixes_labels_and_the_softened_teacher():
    torch.manual_seed(0)
    logits = torch.randn(6, 3)
    teacher = torch.softmax(torch.randn(6, 3), -1)
    labels = torch.tensor([0, 2, 1, NO_LABEL, NO_LABEL, 1])
    labelled = labels != NO_LABEL
    ce = F.cross_entropy(logits, labels.clamp_min(0), reduction="none")
    t = 2.0
    soft = torch.softmax(torch.log(teacher) / t, -1)
    kl = F.kl_div(torch.log_softmax(logits / t, -1), soft, reduction="none").sum(-1) * t * t
    expected = torch.where(labelled, 0.7 * ce + 0.3 * kl, kl).mean()
    assert torch.allclose(distill_loss(logits, teacher, labels, 0.3, t), expected)
    # alpha 0 on labelled rows only: plain cross-entropy
    assert torch.allclose(distill_loss(logits[labelled], teacher[labelled], labels[labelled], 0.0, t),
                          ce[labelled].mean())
    # a student that already has the teacher's distribution has nothing left to learn from it
    same = torch.log(teacher)
    assert distill_loss(same, teacher, torch.full((6,), NO_LABEL), 0.5, 3.0).abs() < 1e-5


def test_learning_from_the_loss_moves_the_student_to_the_teacher():
    teacher = torch.tensor([[0.7, 0.2, 0.1]])
    logits = torch.zeros(1, 3, requires_grad=True)
    opt = torch.optim.SGD([logits], lr=0.5)
    for _ in range(300):
        opt.zero_grad()
        distill_loss(logits, teacher, torch.tensor([NO_LABEL]), 0.5, 2.0).backward()
        opt.step()
    assert torch.allclose(torch.softmax(logits, -1), teacher, atol=1e-3)


def test_layer_means_are_each_texts_mean_token_state_padded_or_packed():
    from textcls.config import config_from_dict as from_dict
    from textcls.model import TextClassifier

    torch.manual_seed(0)
    raw = {"model": tiny_model(num_layers=3, norm="pre", pooling="mean"), "data": {"max_length": 32}}
    cfg = from_dict(raw).model
    model = TextClassifier(cfg, 50, 2).eval()
    ids = torch.randint(1, 50, (3, 7))
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5], dtype=torch.bool)
    with torch.no_grad():
        pooled, means = model.features_and_means(ids, mask, None, [1, 3])
        hidden = model.encode(ids, mask, return_all=True).hidden
        assert torch.equal(pooled, model.features(ids, mask))
        for j, depth in enumerate([1, 3]):
            # pre-norm: a lower layer's states are read through the final norm, as pooling reads them
            states = hidden[2] if depth == 3 else model.encoder.final_norm(hidden[depth - 1])
            for b, n in enumerate([7, 4, 2]):
                assert torch.allclose(means[b, j], states[b, :n].mean(0), atol=1e-6)
        assert torch.allclose(means[:, 1], pooled, atol=1e-6)  # mean pooling of the last layer
        model.padding_free = True
        packed_pooled, packed = model.features_and_means(ids, mask, None, [1, 3])
    assert torch.allclose(packed, means, atol=1e-5) and torch.allclose(packed_pooled, pooled, atol=1e-5)


def test_matched_layers_pair_each_student_layer_with_a_teacher_layer():
    from textcls.distill.loop import matched_layers

    assert matched_layers(None, 3, 6) == []
    assert matched_layers("uniform", 3, 6) == [(1, 2), (2, 4), (3, 6)]
    assert matched_layers("uniform", 1, 6) == [(1, 6)]
    assert matched_layers("uniform", 4, 6) == [(1, 2), (2, 3), (3, 5), (4, 6)]
    assert matched_layers([0, 5], 2, 6) == [(2, 5)]
    with pytest.raises(ConfigError, match="3 entries for a student of 2 layers"):
        matched_layers([1, 2, 3], 2, 6)
    with pytest.raises(ConfigError, match="has 6 layers"):
        matched_layers([2, 7], 2, 6)
    with pytest.raises(ConfigError, match="match_layers"):
        config_from_dict({"distill": {"match_layers": "all"}})
    with pytest.raises(ConfigError, match="layer_weight"):
        config_from_dict({"distill": {"layer_weight": -1}})


def test_the_layer_term_is_the_distance_between_directions():
    from textcls.distill.task import layer_distance

    teacher = F.normalize(torch.tensor([[[1.0, 0.0], [0.0, 2.0]]]), dim=-1)  # (B=1, P=2, H=2)
    assert layer_distance(torch.tensor([[[3.0, 0.0], [0.0, 0.5]]]), teacher) == 0  # scale does not count
    # orthogonal in the first layer (distance 2), the same in the second: averaged over layers
    assert torch.isclose(layer_distance(torch.tensor([[[0.0, 1.0], [0.0, 1.0]]]), teacher), torch.tensor(1.0))


# --------------------------------------------------------------------------- the config section


def test_the_distill_section_is_checked_and_absent_elsewhere():
    cfg = config_from_dict({"distill": {"alpha": 0.2, "temperature": 4}})
    assert (cfg.distill.alpha, cfg.distill.temperature, cfg.distill.augment_copies) == (0.2, 4.0, 4)
    assert "distill" not in config_to_dict(config_from_dict({}))
    assert config_to_dict(cfg)["distill"]["alpha"] == 0.2
    with pytest.raises(ConfigError) as exc:
        config_from_dict({"distill": {"alpah": 0.3, "alpha": 1.5, "temperature": 0, "mask_probability": 1}})
    msg = str(exc.value)
    for part in ("unknown key `distill.alpah`", "did you mean `distill.alpha`", "`distill.alpha`",
                 "`distill.temperature`", "`distill.mask_probability`"):
        assert part in msg
    with pytest.raises(ConfigError, match="hidden_weight"):
        config_from_dict({"distill": {"match_hidden": True, "hidden_weight": -1}})
    with pytest.raises(ConfigError, match="NB-LR"):
        config_from_dict({"distill": {}, "nblr": {"weight": 0.3}})
    with pytest.raises(ConfigError, match="class_weights"):
        config_from_dict({"distill": {}, "train": {"class_weights": "auto"}})


# --------------------------------------------------------------------------- a tiny teacher


def trained_teacher(folder: Path, model: dict, train_opts: dict) -> Path:
    """A small classifier trained on 240 SST-2 rows in `folder`, 20% held out for validation (split seed 5)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TEXTCLS_CACHE", str(folder / "cache"))
    try:
        data = write_tsv(folder / "train.tsv", sst2_slice(240))
        cfg = tiny_config(data, None, folder / "run", data={"valid_fraction": 0.2, "split_seed": 5},
                          model=tiny_model(hidden_size=48, num_heads=2, **model), train=train_opts)
        train(cfg, quiet=True)
    finally:
        mp.undo()
    return folder / "run"


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory) -> Path:
    """A 2-layer classifier trained for 2 epochs."""
    return trained_teacher(tmp_path_factory.mktemp("teacher"), {}, {"epochs": 2, "seed": 1})


def student_yaml(path: Path, **train_opts) -> Path:
    """A student CONFIG without a data section: the teacher's file and split are used."""
    cfg = {"data": {"max_length": 32}, "tokenizer": {"vocab_size": 200, "min_frequency": 1},
           "model": tiny_model(hidden_size=32, embedding_size=16, sharing={"strategy": "all"}),
           "train": {"epochs": 1, "batch_size": 16, "lr": 3e-3, "seed": 2, "log_every": 1, **train_opts},
           "distill": {"augment_copies": 1, "mask_probability": 0.2}}
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_a_student_is_an_ordinary_run_that_names_its_teacher(teacher_run, tmp_path):
    extra = tmp_path / "more.txt"
    extra.write_text("a quietly moving film\n\nthe worst movie of the year\n", encoding="utf-8")
    result = distill(teacher_run, student_yaml(tmp_path / "s.yaml"), output=tmp_path / "student",
                     unlabelled=[str(extra)], quiet=True)
    out = tmp_path / "student"
    teacher_cfg = load_config(teacher_run / "config.yaml")
    assert result.rows == {"labelled": 192, "augmented": 192, "unlabelled": 2}  # 240 rows less 20% held out
    info = json.loads((out / "run.json").read_text())
    assert info["teacher"] == {"path": str(teacher_run.resolve()), "sha256": run_digest(teacher_run)}
    recorded = json.loads((teacher_run / "run.json").read_text())["sha256"]["model.safetensors"]
    assert info["teacher"]["sha256"] == recorded
    cfg = load_config(out / "config.yaml")
    assert cfg.distill.teacher == str(teacher_run.resolve()) and cfg.distill.unlabelled == [str(extra.resolve())]
    assert (cfg.data.train, cfg.data.valid_fraction, cfg.data.split_seed) == (
        teacher_cfg.data.train, teacher_cfg.data.valid_fraction, 5)  # the teacher's rows and split
    assert cfg.model.sharing.strategy == "all" and cfg.data.max_length == 32  # the CONFIG's own keys
    # the validation rows are the teacher's held-out rows: the same count in both reports
    reports = [json.loads((run / "eval_report.json").read_text()) for run in (out, teacher_run)]
    assert reports[0]["examples"] == reports[1]["examples"] == 48
    support = [[sum(row) for row in r["confusion_matrix"]] for r in reports]
    assert support[0] == support[1]
    # the cache holds the teacher's probabilities of the training rows first, in its label order
    cached = load_file(str(out / "teacher_probs.safetensors"))["probabilities"].numpy()
    assert cached.shape == (386, 2)
    teacher = load_run(teacher_run)
    texts = ["a quietly moving film", "the worst movie of the year"]
    precision = resolve_precision("auto", torch.device("cpu"))  # the student's: bf16 where the CPU has bf16 units
    assert np.allclose(cached[-2:], run_predictor(teacher, precision=precision).predict_proba(texts), atol=1e-6)
    # eval, predict and info read it as any run
    student = load_run(out)
    probs = run_predictor(student).predict_proba(texts)
    assert probs.shape == (2, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)
    keys = student.model.state_dict()
    assert {k.split(".")[2] for k in keys if k.startswith("encoder.")} == {"0"}  # one layer, shared by both depths
    assert "embeddings.project.weight" in keys  # factorized embeddings


def test_the_teacher_runs_once_and_a_changed_teacher_is_refused_on_resume(teacher_run, tmp_path, monkeypatch):
    config = student_yaml(tmp_path / "s.yaml", max_steps=4, eval_every=2)
    distill(teacher_run, config, output=tmp_path / "student", quiet=True)
    calls = []
    original = Teacher.probabilities
    monkeypatch.setattr(Teacher, "probabilities", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    distill(teacher_run, config, ["output.overwrite=true"], output=tmp_path / "student", quiet=True)
    assert calls == []  # same texts, same teacher: read from the cache
    distill(teacher_run, config, ["output.overwrite=true", "distill.mask_probability=0.3"],
            output=tmp_path / "student", quiet=True)
    assert calls == [1]  # other texts: computed again
    # a resumed run whose teacher changed meanwhile is refused (its probabilities would not be the same)
    monkeypatch.setattr("textcls.distill.teacher.run_digest", lambda path: "0" * 64)
    assert (tmp_path / "student" / "last" / "state.json").is_file()  # a checkpoint to resume
    with pytest.raises(ConfigError, match=f"textcls distill {teacher_run} --output"):  # --resume keeps the plan
        distill(teacher_run, None, ["train.lr=0.1"], output=tmp_path / "student", resume=True, quiet=True)
    with pytest.raises(CheckpointError, match="another teacher"):
        distill(teacher_run, None, output=tmp_path / "student", resume=True, quiet=True)


@pytest.mark.parametrize("match", ["none", "hidden", "layers"])
def test_resume_after_sigterm_gives_identical_weights_without_the_teacher(teacher_run, tmp_path, monkeypatch,
                                                                          match):
    config = student_yaml(tmp_path / "s.yaml", epochs=2, eval_every=5, batch_size=32, grad_accum=2)
    match_hidden, match_layers = match == "hidden", match == "layers"
    if match != "none":  # the projection is trained and checkpointed too, but not part of the student's weights
        raw = yaml.safe_load(config.read_text())
        raw["distill"].update(match_hidden=True, hidden_weight=0.5) if match_hidden else raw["distill"].update(
            match_layers="uniform", layer_weight=2.0)
        config.write_text(yaml.safe_dump(raw))
    full = distill(teacher_run, config, output=tmp_path / "full", quiet=True)
    with monkeypatch.context() as m:
        interrupt_at(m, 4)
        with pytest.raises(Interrupted):
            distill(teacher_run, config, output=tmp_path / "cut", quiet=True)
    state = json.loads((tmp_path / "cut" / "last" / "state.json").read_text())
    assert state["step"] == 4
    monkeypatch.setattr(Teacher, "probabilities", lambda *a, **k: pytest.fail("the cache should answer"))
    monkeypatch.setattr(Teacher, "pooled", lambda *a, **k: pytest.fail("the cache should answer"))
    monkeypatch.setattr(Teacher, "layer_means", lambda *a, **k: pytest.fail("the cache should answer"))
    resumed = distill(teacher_run, None, output=tmp_path / "cut", resume=True, quiet=True)
    assert resumed.steps == full.steps and resumed.best_metric == full.best_metric
    for name in ("last/model.safetensors", "model.safetensors"):
        a, b = (load_file(str(tmp_path / run / name)) for run in ("full", "cut"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log = lambda run: (tmp_path / run / "metrics.jsonl").read_text().splitlines()  # noqa: E731
    assert log("cut") == log("full")
    best, last = (load_file(str(tmp_path / "cut" / name)) for name in ("model.safetensors", "last/model.safetensors"))
    assert not any(k.startswith(("student.", "project.")) for k in best)  # an ordinary classifier's keys
    assert any(k.startswith("project.") for k in last) == match_hidden
    # the 32-wide student's two layers against the 48-wide teacher's two: one learned projection
    assert ("project_layers.weight" in last) == match_layers
    if match != "none":
        assert {k.removeprefix("student.") for k in last if k.startswith("student.")} == set(best)
        cached = load_file(str(tmp_path / "cut" / "teacher_probs.safetensors"))
        # 192 rows + 192 copies, the teacher's hidden size
        assert cached["pooled" if match_hidden else "layers"].shape == ((384, 48) if match_hidden else (384, 2, 48))
        assert load_run(tmp_path / "cut").model is not None


# --------------------------------------------------------------------------- bad input


def test_bad_teachers_are_refused_in_one_paragraph(teacher_run, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_teacher(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        load_teacher(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not a textcls run"):
        load_teacher(tmp_path / "empty")
    with pytest.raises(DataError, match="unlabelled file"):
        distill(teacher_run, student_yaml(tmp_path / "s.yaml"), output=tmp_path / "out",
                unlabelled=[str(tmp_path / "missing.txt")], quiet=True)
    assert not (tmp_path / "out" / "config.yaml").exists()  # nothing written for a bad input
    unfinished = tmp_path / "unfinished"
    shutil.copytree(teacher_run, unfinished)
    (unfinished / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="interrupted before its first evaluation"):
        load_teacher(unfinished)
    result = run_cli("distill", str(tmp_path / "empty"), "--output", str(tmp_path / "o2"))
    assert result.returncode == 2 and "not a textcls run directory" in result.stderr
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- the recipe-sized student


def test_the_recipe_student_is_a_shared_factorized_encoder():
    records = [Record(i + 1, f"word{i % 50} " * 12, None, [f"c{i % 2}"]) for i in range(5000)]
    stats = data_stats(records)
    fake = lambda c: 2e-8 * c.model["hidden_size"] * c.batch_size * c.length  # noqa: E731
    recipe = auto_recipe(stats, 600, Machine("cpu", 2, False), fake, valid_rows=500)
    raw = student_sections(recipe, 600, 10)
    cfg = config_from_dict({**raw, "distill": {}})
    m = cfg.model
    assert m.sharing.strategy == "all" and m.embedding_size and m.embedding_size < m.hidden_size
    assert m.position == "learned" and m.embeddings.ngram_orders == []
    assert cfg.train.ensemble == 1 and cfg.nblr.weight == 0 and 0 < cfg.train.time_budget_seconds < 600
    assert cfg.data.max_length == recipe.raw["data"]["max_length"]


@pytest.mark.slow
def test_the_cli_distils_without_a_config_and_the_student_evaluates(teacher_run, tmp_path):
    out = tmp_path / "student"
    made = run_cli("distill", str(teacher_run), "--output", str(out), "--budget", "40s",
                   "--set", "distill.augment_copies=1", "--set", "train.lr=0.002",
                   env={"TEXTCLS_CACHE": str(tmp_path / "cache")})
    assert made.returncode == 0, made.stderr
    cfg = load_config(out / "config.yaml")
    assert cfg.model.sharing.strategy == "all" and cfg.recipe.name == "auto"
    assert cfg.train.lr == 0.002 and cfg.distill.augment_copies == 1  # --set goes over the recipe's choices
    test = write_tsv(tmp_path / "test.tsv", sst2_slice(40, "dev"))
    evaluated = run_cli("eval", str(out), str(test))
    assert evaluated.returncode == 0, evaluated.stderr
    assert run_cli("info", str(out)).returncode == 0
    predicted = run_cli("predict", str(out), str(test))
    assert predicted.returncode == 0 and len(predicted.stdout.strip().splitlines()) >= 40


def test_a_data_file_given_with_set_replaces_the_teachers(teacher_run, tmp_path):
    fewer = write_tsv(tmp_path / "fewer.tsv", sst2_slice(100, offset=500))
    result = distill(teacher_run, student_yaml(tmp_path / "s.yaml", max_steps=2), [f"data.train={fewer}"],
                     output=tmp_path / "student", quiet=True)
    assert result.rows["labelled"] == 80  # the teacher's valid_fraction (0.2) and split seed, on this file
    cfg = load_config(tmp_path / "student" / "config.yaml")
    assert cfg.data.train == str(fewer) and cfg.data.split_seed == 5


def test_the_teacher_digest_covers_every_weights_file_but_checkpoints(tmp_path):
    run = tmp_path / "ensemble"
    for rel in ("members/0/model.safetensors", "members/1/model.safetensors", "nblr.safetensors",
                "last/model.safetensors", "members/0/last/model.safetensors"):
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_bytes(rel.encode())
    (run / "ensemble.json").write_text("{}")
    first = run_digest(run)
    (run / "last" / "model.safetensors").write_bytes(b"changed")  # a checkpoint is not the teacher
    (run / "members/0/last/model.safetensors").write_bytes(b"changed")
    assert run_digest(run) == first
    (run / "members/1/model.safetensors").write_bytes(b"retrained")
    assert run_digest(run) != first


def test_an_ensemble_teacher_gives_its_averaged_probabilities(tmp_path):
    data = write_tsv(tmp_path / "train.tsv", sst2_slice(120))
    cfg = tiny_config(data, None, tmp_path / "ensemble", data={"valid_fraction": 0.25},
                      train={"ensemble": 2, "max_steps": 3})
    train(cfg, quiet=True)
    teacher = load_teacher(tmp_path / "ensemble")
    texts = ["a fine film", "dull and long"]
    extra = tmp_path / "more.txt"
    extra.write_text("\n".join(texts) + "\n", encoding="utf-8")
    distill(tmp_path / "ensemble", student_yaml(tmp_path / "s.yaml", max_steps=2), output=tmp_path / "student",
            unlabelled=[str(extra)], quiet=True)
    cached = load_file(str(tmp_path / "student" / "teacher_probs.safetensors"))["probabilities"].numpy()
    precision = resolve_precision("auto", torch.device("cpu"))  # the student's
    assert np.allclose(cached[-2:], run_predictor(teacher.run, precision=precision).predict_proba(texts), atol=1e-6)
    info = json.loads((tmp_path / "student" / "run.json").read_text())
    assert info["teacher"]["sha256"] == run_digest(tmp_path / "ensemble") == teacher.sha256
    # an ensemble's pooled vectors are its first member's, the member a layers student starts from
    first = teacher.run.model.members[0]
    pooled = teacher.pooled(texts, torch.device("cpu"))
    ids, _ = encode_texts(teacher.run.tokenizer, texts, None, teacher.run.cfg.data.max_length)
    with torch.no_grad():  # each text alone, unpadded
        expected = np.concatenate([first.features(torch.tensor([x]), torch.ones(1, len(x), dtype=torch.bool),
                                                  torch.zeros(1, len(x), dtype=torch.long)).numpy() for x in ids])
    assert pooled.shape == (len(texts), first.cfg.hidden_size) and np.allclose(pooled, expected, atol=1e-5)
    from textcls.distill.layers import teacher_layer_passes

    assert teacher_layer_passes(teacher) == 2 * 2  # two members of two layers


def test_the_automatic_student_is_as_deep_as_a_sixth_of_the_teachers_layer_passes_allows():
    from textcls.distill.layers import default_layers

    # (teacher's layers, its layer passes: copies x layers) -> the student's layers, at most half the teacher's
    assert [default_layers(6, 6 * c) for c in (1, 2, 3, 4, 5, 10)] == [1, 2, 3, 3, 3, 3]
    assert default_layers(3, 3) == 1 and default_layers(12, 12) == 2 and default_layers(12, 48) == 6


# --------------------------------------------------------------------------- word vectors from the teacher


def test_a_token_reads_as_the_text_it_stands_for():
    from textcls.distill.vectors import token_text

    assert [token_text(t) for t in ("film", "##ing", "film</w>", "\u2581film", "##")] == \
        ["film", "ing", "film", "film", ""]


def test_the_reduction_keeps_the_largest_components_at_an_rms_of_one():
    from textcls.distill.vectors import reduce

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(200, 6)) * np.array([5.0, 3.0, 1.0, 0.5, 0.2, 0.1]) + 7.0  # offset: centred away
    out = reduce(vectors, 3)
    assert out.shape == (200, 3) and out.dtype == np.float32
    assert np.sqrt(np.mean(out.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-5)
    assert np.allclose(out.mean(axis=0), 0, atol=1e-5)
    spread = out.std(axis=0)
    assert spread[0] > spread[1] > spread[2]  # by variance, largest first
    assert reduce(vectors, 10).shape == (200, 6)  # no more components than the vectors have


def test_the_students_word_vectors_come_from_the_teacher(teacher_run):
    from textcls.data.tokenizer import SPECIAL_TOKENS
    from textcls.distill.vectors import init_from_teacher, teacher_vectors

    teacher = load_teacher(teacher_run)
    vocab = {t: i for i, t in enumerate([*SPECIAL_TOKENS, "good", "bad", "film", "##film", "the"])}
    embedding = torch.nn.Embedding(len(vocab), 4, padding_idx=0)
    before = embedding.weight.detach().clone()
    assert init_from_teacher(embedding, vocab, teacher) == 5
    after = embedding.weight.detach()
    assert torch.equal(after[:5], before[:5])  # [PAD], [UNK], [CLS], [SEP], [MASK] keep their rows
    assert not torch.equal(after[5:], before[5:])
    assert torch.equal(after[vocab["film"]], after[vocab["##film"]])  # both stand for "film"
    # the teacher's pooled vector of each text read alone
    full = teacher_vectors(teacher, ["good", "bad", "the"])
    assert full.shape == (3, 48) and not np.allclose(full[0], full[1])
    wide = torch.nn.Embedding(len(vocab), 64)  # wider than the teacher: the remaining columns stay random
    kept = wide.weight.detach().clone()
    init_from_teacher(wide, vocab, teacher)
    now = wide.weight.detach()
    assert torch.equal(now[5:, 4:], kept[5:, 4:]) and not torch.equal(now[5:, :4], kept[5:, :4])


# --------------------------------------------------------------------------- a student of the teacher's layers


@pytest.fixture(scope="module")
def deep_teacher(tmp_path_factory) -> Path:
    """A 3-layer classifier (6 steps): deep enough to lend its first layer."""
    return trained_teacher(tmp_path_factory.mktemp("deep"), {"num_layers": 3}, {"max_steps": 6})


def test_the_pruned_tokenizer_reads_the_texts_as_the_teachers_does(deep_teacher):
    from textcls.data.tokenizer import SPECIAL_TOKENS
    from textcls.distill.layers import prune_tokenizer

    full = load_teacher(deep_teacher).run.tokenizer
    texts = [r[0] for r in sst2_slice(60)]
    pruned, kept, counts = prune_tokenizer(full, texts)
    assert len(kept) < full.get_vocab_size() and kept == sorted(kept)
    assert all(pruned.token_to_id(t) is not None for t in SPECIAL_TOKENS) and pruned.token_to_id("[PAD]") == 0
    for text in texts:  # the same pieces, each under its new id
        before, after = full.encode(text), pruned.encode(text)
        assert after.tokens == before.tokens and [kept[i] for i in after.ids] == before.ids
    used = [i for text in texts for i in pruned.encode(text, add_special_tokens=False).ids]
    assert counts.tolist() == [used.count(i) for i in range(len(kept))]  # characters kept unused count 0
    unseen = "zebras"  # its whole-word token (if the teacher has one) is gone; its characters remain
    assert pruned.token_to_id("[UNK]") not in pruned.encode(unseen).ids or "z" not in "".join(texts)
    # a BERT tokenizer's post-processor names [CLS] and [SEP] by id: the ids move with the vocabulary
    spec = json.loads(full.to_str())
    ids = {t: full.token_to_id(t) for t in ("[CLS]", "[SEP]")}
    spec["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                   {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {t: {"id": t, "ids": [i], "tokens": [t]} for t, i in ids.items()}}
    from tokenizers import Tokenizer

    bert, _, _ = prune_tokenizer(Tokenizer.from_str(json.dumps(spec)), texts)
    enc = bert.encode(texts[0])
    assert enc.tokens[0] == "[CLS]" and enc.tokens[-1] == "[SEP]"
    assert enc.ids[0] == bert.token_to_id("[CLS]") and enc.ids[-1] == bert.token_to_id("[SEP]")


def test_the_layers_student_starts_as_the_teachers_first_layers(deep_teacher):
    from textcls.config import config_from_dict as from_dict
    from textcls.distill.layers import layers_student, unfit_reason
    from textcls.model import TextClassifier

    teacher = load_teacher(deep_teacher)
    assert unfit_reason(teacher) is None
    texts = [r[0] for r in sst2_slice(60)]
    lent = layers_student(teacher, texts, 1, 32)
    assert lent.model["num_layers"] == 1 and lent.teacher_layers == 3 and lent.vocab < lent.teacher_vocab
    assert not any(k.startswith("head.") or ".1." in k or ".2." in k for k in lent.state)
    cfg = from_dict({"model": lent.model, "data": {"max_length": 32}}).model
    student = TextClassifier(cfg, lent.vocab, 2, 0)
    student.load_state_dict(lent.state, strict=False)
    model = teacher.run.model
    student.eval(), model.eval()
    old = torch.tensor([teacher.run.tokenizer.encode(texts[0]).ids])
    new = torch.tensor([lent.tokenizer.encode(texts[0]).ids])
    with torch.no_grad():
        mask = torch.ones_like(old, dtype=torch.bool)
        assert torch.allclose(student.embeddings(new), model.embeddings(old))  # the teacher's rows, row for row
        ours = student.encoder(student.embeddings(new), mask)[0][-1]
        theirs = model.encoder(model.embeddings(old), mask, return_all=True)[0][0]  # after the teacher's layer 0
    assert ours.shape == (1, old.shape[1], 48) and torch.allclose(ours, theirs, atol=1e-5)


def test_the_automatic_student_keeps_the_teachers_lower_layers(deep_teacher, tmp_path):
    from textcls.data.tokenizer import load_tokenizer

    out = tmp_path / "student"
    result = distill(deep_teacher, None, ["train.max_steps=2", "distill.augment_copies=1"], output=out,
                     budget=120, quiet=True)
    assert result.steps == 2
    cfg = load_config(out / "config.yaml")
    assert cfg.model.num_layers == 1 and cfg.distill.student_layers == 1 and cfg.recipe.name == "auto"
    assert cfg.model.sharing.strategy == "none" and cfg.model.hidden_size == 48
    choices = {c["key"]: c for c in cfg.recipe.choices}
    assert "model.num_layers" in choices and "tokenizer" in choices
    # the whole table would be over a tenth of the teacher: the table is factorized (at the floor rank here)
    assert cfg.model.embeddings.word_rank == 32 and "rank 32" in choices["model.embeddings.word_rank"]["reason"]
    assert load_file(str(out / "model.safetensors"))["embeddings.word.weight"].shape[1] == 32
    teacher_vocab = load_teacher(deep_teacher).run.tokenizer.get_vocab_size()
    assert load_tokenizer(out / "tokenizer.json").get_vocab_size() < teacher_vocab
    texts = [r[0] for r in sst2_slice(8, "dev")]
    probs = run_predictor(load_run(out)).predict_proba(texts)
    assert probs.shape == (8, 2) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    scratch = distill(deep_teacher, None, ["train.max_steps=1", "distill.student_layers=0",
                                           "distill.augment_copies=1"], output=tmp_path / "scratch", budget=120,
                      quiet=True)
    assert load_config(scratch.run_dir / "config.yaml").model.sharing.strategy == "all"  # the recipe student


def test_the_layers_students_plan_fills_the_budget_in_tenths_of_an_epoch(deep_teacher, monkeypatch):
    import math

    import textcls.distill.student as student_module
    from textcls.distill.layers import layers_student
    from textcls.recipe.rules import MEMBER_OVERHEAD, PLAN_SHARE

    teacher = load_teacher(deep_teacher)
    texts = [r[0] for r in sst2_slice(200)]
    lent = layers_student(teacher, texts, 1, 64)
    timed = []

    def fixed_step(*args, **kwargs):  # every step takes 50 ms; the length it was timed at is recorded
        return lambda candidate: timed.append(candidate.length) or 0.05

    monkeypatch.setattr(student_module, "step_timer", fixed_step)
    data = teacher.run.cfg.data
    budgets = {}
    for budget in (62.0, 75.0, 600.0):
        raw, record = student_module.plan_layers_student(lent, data, texts, 3000, 100, budget, 5.0,
                                                         10 * 10**6, 10**12)
        budgets[budget] = raw["train"]["epochs"]
        assert raw["train"]["time_budget_seconds"] < budget - 5.0
        reason = next(c["reason"] for c in record["choices"] if c["key"] == "train.epochs")
        assert f"at 50 ms a step (timed at {timed[-1]} tokens)" in reason
    lengths = [len(e.ids) for e in lent.tokenizer.encode_batch(texts[:1000], add_special_tokens=True)]
    mean = sum(lengths) / len(lengths)
    assert timed[0] == min(data.max_length, math.ceil(mean / 8) * 8)  # bucketed batches pad to about the mean
    steps, evals = math.ceil(3000 / 32), math.ceil(100 / 32)
    epoch = (steps + evals / 3) * 0.05 * student_module.LAYERS_STEP_FACTOR + student_module.EPOCH_OVERHEAD
    for budget, epochs in budgets.items():
        fit = PLAN_SHARE * (budget - 5.0 - MEMBER_OVERHEAD - (evals * 0.05 / 3 + 3.0)) / epoch
        assert epochs == min(student_module.MOST_EPOCHS, math.floor(fit * 10) / 10)  # no whole epoch lost
    assert budgets[62.0] != int(budgets[62.0]) and budgets[62.0] < budgets[75.0] < budgets[600.0] == 20


def test_the_layers_student_is_narrowed_for_speed_and_factorized_for_size(deep_teacher, monkeypatch):
    import textcls.distill.student as student_module
    from textcls.distill.layers import ARITHMETIC_SHARE, layer_arithmetic, layers_student, student_parameters

    teacher = load_teacher(deep_teacher)
    texts = [r[0] for r in sst2_slice(200)]
    lent = layers_student(teacher, texts, 1, 64)
    monkeypatch.setattr(student_module, "step_timer", lambda *a, **k: lambda candidate: 0.05)

    def planned(teacher_parameters: int, teacher_arithmetic: int) -> tuple[dict, dict]:
        raw, record = student_module.plan_layers_student(lent, teacher.run.cfg.data, texts, 3000, 100, 600.0, 5.0,
                                                         teacher_parameters, teacher_arithmetic)
        return raw["model"], {c["key"]: c["reason"] for c in record["choices"]}

    hidden, inter = lent.model["hidden_size"], lent.model["intermediate_size"]
    fast = ARITHMETIC_SHARE * layer_arithmetic(hidden, inter)  # one layer at exactly the aim
    whole = student_parameters(lent, 2)
    model, reasons = planned(10 * whole, fast)  # a tenth of the parameters and of the arithmetic: kept whole
    assert model["embeddings"]["word_rank"] is None and model["intermediate_size"] == inter
    assert "the whole word table" in reasons["model.embeddings.word_rank"]
    assert f"the teacher's {inter} feed-forward neurons" in reasons["model.intermediate_size"]
    slow = ARITHMETIC_SHARE * layer_arithmetic(hidden, 32)  # only 32 neurons keep to the aim
    model, reasons = planned(10 * whole, slow)  # narrowed for speed; fewer parameters, so the table stays whole
    assert model["intermediate_size"] == 32 and model["embeddings"]["word_rank"] is None
    assert f"the 32 of the teacher's {inter}" in reasons["model.intermediate_size"]
    assert f"model.intermediate_size={inter}" in reasons["model.intermediate_size"]
    low = student_parameters(lent, 2, 32)
    assert low < whole
    model, reasons = planned(10 * low + 10, fast)  # fast enough, but only a rank-32 table is a tenth
    assert model["embeddings"]["word_rank"] == 32 and model["intermediate_size"] == inter
    assert lent.model["embeddings"]["word_rank"] is None and lent.model["intermediate_size"] == inter
    assert f"1/{(10 * low + 10) / low:.1f}" in reasons["model.embeddings.word_rank"]
    assert "word_rank=null" in reasons["model.embeddings.word_rank"]
    narrow_low = student_parameters(lent, 2, 32, 32)
    model, _ = planned(10 * narrow_low + 10, slow)  # both cuts: the narrower blocks leave room for no more rank
    assert model["intermediate_size"] == 32 and model["embeddings"]["word_rank"] == 32


def test_the_feed_forward_width_keeps_the_student_within_its_share_of_the_arithmetic():
    from textcls.distill.layers import LayersStudent, fitting_ffn, layer_arithmetic

    lent = LayersStudent({"hidden_size": 384, "intermediate_size": 1536}, None, {}, 2, 6, 100, 30000)
    teacher = 12 * layer_arithmetic(384, 1536)  # two copies of a 6-layer MiniLM: 21,233,664 per token
    assert layer_arithmetic(384, 1536) == 4 * 384 * 384 + 2 * 384 * 1536 == 1_769_472
    assert fitting_ffn(lent, teacher // 6) == 1536  # 2 of 12 layers: a sixth fits as they are
    # a seventh: 3,033,380 / 2 layers - 589,824 = 926,866 for 768 multiply-adds per neuron: 1,206 -> 1,184
    assert fitting_ffn(lent, teacher // 7) == 1184
    assert 2 * layer_arithmetic(384, 1184) <= teacher // 7 < 2 * layer_arithmetic(384, 1184 + 32)
    assert fitting_ffn(lent, 1) == 32  # never below 32


def test_a_low_rank_word_table_is_the_closest_fit_to_the_teachers():
    from textcls.distill.layers import low_rank

    torch.manual_seed(0)
    exact = torch.randn(50, 3) @ torch.randn(3, 16) + torch.randn(16)  # rank 3 about a mean
    out = low_rank({"embeddings.word.weight": exact, "other": torch.ones(2)}, 3)
    vectors, proj = out["embeddings.word.weight"], out["embeddings.word_project.weight"]
    assert vectors.shape == (50, 3) and proj.shape == (16, 3) and torch.equal(out["other"], torch.ones(2))
    rebuilt = torch.nn.functional.linear(vectors, proj, out["embeddings.word_project.bias"])
    torch.testing.assert_close(rebuilt, exact, atol=1e-4, rtol=0)
    noisy = exact + 0.1 * torch.randn(50, 16)  # at rank 3 the remainder is the smallest possible
    two = low_rank({"embeddings.word.weight": noisy}, 3)
    fit = torch.nn.functional.linear(two["embeddings.word.weight"], two["embeddings.word_project.weight"],
                                     two["embeddings.word_project.bias"])
    s = torch.linalg.svdvals(noisy - noisy.mean(0))
    assert torch.isclose((noisy - fit).pow(2).sum(), s[3:].pow(2).sum(), rtol=1e-3)


def test_a_low_rank_word_table_fits_the_frequent_tokens_best():
    from textcls.distill.layers import low_rank

    torch.manual_seed(0)
    table = torch.randn(60, 16)  # full rank: a rank-4 fit must give something up
    counts = torch.zeros(60, dtype=torch.float64)
    counts[:5] = 1000  # five tokens make up nearly all of the texts

    def rebuilt(out):
        return torch.nn.functional.linear(out["embeddings.word.weight"], out["embeddings.word_project.weight"],
                                          out["embeddings.word_project.bias"])

    weighted, plain = rebuilt(low_rank({"embeddings.word.weight": table}, 4, counts)), rebuilt(
        low_rank({"embeddings.word.weight": table}, 4))
    err_w, err_p = ((table - fit).pow(2).sum(1) for fit in (weighted, plain))
    assert err_w[:5].max() < 0.01 * err_p[:5].mean()  # the frequent rows are kept almost exactly
    w = (counts + 1) / (counts + 1).sum()
    assert (w * err_w).sum() < (w * err_p).sum()  # and the error the texts see is smaller
    mean = w @ table.double()  # which is the least possible at rank 4
    s = torch.linalg.svdvals((table.double() - mean) * w.sqrt()[:, None])
    assert torch.isclose((w * err_w.double()).sum(), s[4:].pow(2).sum(), rtol=1e-3)


def test_the_word_rank_keeps_the_student_within_its_share_of_the_teacher():
    from textcls.distill.layers import LayersStudent, fitting_rank, student_parameters

    state = {"embeddings.word.weight": torch.zeros(1000, 64), "encoder.ffn.0.up.weight": torch.zeros(500)}
    lent = LayersStudent({"hidden_size": 64, "embedding_size": None}, None, state, 1, 3, 1000, 30000)
    full = 1000 * 64 + 500 + 65 * 2  # the table, the rest, a 2-label head
    assert fitting_rank(lent, full, 2) is None
    assert fitting_rank(lent, 60_000, 2) == 55  # 1000 x 55 + 55 x 64 + 64 + 630 = 59,214 <= 60,000 < at 56
    assert student_parameters(lent, 2, 55) == 59_214 and student_parameters(lent, 2, 56) > 60_000
    assert student_parameters(lent, 2) == full
    assert fitting_rank(lent, 50_000, 2) == 46
    assert fitting_rank(lent, 1_000, 2) == 32  # never below 32: the student is then over its share


def test_a_layers_student_takes_the_word_rank_it_is_given(deep_teacher, tmp_path):
    sets = ["train.max_steps=1", "distill.augment_copies=1"]
    distill(deep_teacher, None, [*sets, "model.embeddings.word_rank=8"], output=tmp_path / "low", budget=120,
            quiet=True)
    weights = load_file(str(tmp_path / "low" / "model.safetensors"))
    assert weights["embeddings.word.weight"].shape[1] == 8
    assert weights["embeddings.word_project.weight"].shape == (48, 8)
    assert load_run(tmp_path / "low").model.cfg.embeddings.word_rank == 8
    distill(deep_teacher, None, [*sets, "model.embeddings.word_rank=null"], output=tmp_path / "whole", budget=120,
            quiet=True)  # the whole table, teacher's rows as they are
    whole = load_file(str(tmp_path / "whole" / "model.safetensors"))
    assert "embeddings.word_project.weight" not in whole and whole["embeddings.word.weight"].shape[1] == 48


def test_matching_a_layer_pulls_the_students_states_to_the_teachers(deep_teacher, tmp_path):
    from textcls.data.batching import pad_batch

    sets = ["train.max_steps=12", "distill.augment_copies=1", "train.lr=3e-3"]
    distill(deep_teacher, None, sets, output=tmp_path / "plain", budget=120, quiet=True)
    distill(deep_teacher, None, [*sets, "distill.match_layers=uniform", "distill.layer_weight=20"],
            output=tmp_path / "matched", budget=120, quiet=True)
    cfg = load_config(tmp_path / "matched" / "config.yaml")
    assert cfg.model.num_layers == 1 and cfg.distill.match_layers == "uniform"
    cached = load_file(str(tmp_path / "matched" / "teacher_probs.safetensors"))
    teacher = load_teacher(deep_teacher)
    n = len(cached["probabilities"])
    # the one student layer against the teacher's third: its states, as the teacher computes them
    texts = [r[0] for r in sst2_slice(8, "dev")]
    direct = teacher.layer_means(texts, [3], torch.device("cpu"))
    assert cached["layers"].shape == (n, 1, 48) and direct.shape == (8, 1, 48)
    last = load_file(str(tmp_path / "matched" / "last" / "model.safetensors"))
    assert "project_layers.weight" not in last  # the same width: no projection

    def distance(run: Path) -> float:  # to the teacher's third layer, on texts neither saw
        student = load_run(run)
        model, tok = student.model.eval(), student.tokenizer
        ids, _ = encode_texts(tok, texts, None, 32, "head", None)
        with torch.no_grad():
            input_ids, mask, _ = pad_batch(ids, None, tok.token_to_id("[PAD]"))
            means = model.features_and_means(input_ids, mask, None, [1])[1]
        target = F.normalize(torch.from_numpy(direct), dim=-1)
        return float((F.normalize(means, dim=-1) - target).pow(2).sum(-1).mean())

    assert distance(tmp_path / "matched") < distance(tmp_path / "plain")
    with pytest.raises(ConfigError, match="2 entries for a student of 1 layers"):
        distill(deep_teacher, None, [*sets, "distill.match_layers=[2, 3]"], output=tmp_path / "bad", budget=120,
                quiet=True)


def test_a_layers_student_resumes_to_the_same_weights(deep_teacher, tmp_path, monkeypatch):
    sets = ["train.max_steps=8", "train.eval_every=3", "distill.augment_copies=1"]
    full = distill(deep_teacher, None, sets, output=tmp_path / "full", budget=120, quiet=True)
    with monkeypatch.context() as m:
        interrupt_at(m, 4)
        with pytest.raises(Interrupted):
            distill(deep_teacher, None, sets, output=tmp_path / "cut", budget=120, quiet=True)
    monkeypatch.setattr(Teacher, "probabilities", lambda *a, **k: pytest.fail("the cache should answer"))
    resumed = distill(deep_teacher, None, output=tmp_path / "cut", resume=True, quiet=True)
    assert resumed.steps == full.steps == 8
    a, b = (load_file(str(tmp_path / run / "model.safetensors")) for run in ("full", "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "cut" / "tokenizer.json").read_text() == (tmp_path / "full" / "tokenizer.json").read_text()


def test_the_students_model_keys_are_named_at_once_and_their_values_checked_against_the_student(deep_teacher,
                                                                                                tmp_path):
    # the 48-wide student takes ranks up to 47; a default 256-wide model up to 255, and 300 must be refused as the
    # student's (checked against the default, 300 < 383 would refuse a rank a 384-wide student takes)
    with pytest.raises(ConfigError, match=r"word_rank` must be between 1 and the embedding width less one \(47\)"):
        distill(deep_teacher, None, ["train.max_steps=1", "model.embeddings.word_rank=300"], output=tmp_path / "a",
                budget=60, quiet=True)
    with pytest.raises(ConfigError, match=r"unknown key `model.embeddings.word_rnk` \(from --set\)"):
        distill(deep_teacher, None, ["model.embeddings.word_rnk=8"], output=tmp_path / "b", budget=60, quiet=True)
    assert not (tmp_path / "b").exists()  # refused before the teacher's pass


def test_student_layers_the_teacher_cannot_lend_are_refused(deep_teacher, teacher_run, tmp_path):
    with pytest.raises(ConfigError, match="has 3 layers; keep fewer"):
        distill(deep_teacher, None, ["distill.student_layers=3"], output=tmp_path / "a", budget=60, quiet=True)
    with pytest.raises(ConfigError, match="cannot lend its layers .*2 layer"):
        distill(teacher_run, None, ["distill.student_layers=1"], output=tmp_path / "b", budget=60, quiet=True)
    with pytest.raises(ConfigError, match="with a CONFIG the student is"):
        distill(deep_teacher, student_yaml(tmp_path / "s.yaml", max_steps=1), ["distill.student_layers=1"],
                output=tmp_path / "c", quiet=True)
    with pytest.raises(ConfigError, match="student_layers"):
        config_from_dict({"distill": {"student_layers": -1}})


def test_narrowing_a_feed_forward_block_keeps_the_neurons_that_add_most_and_its_mean_output():
    from textcls.distill.layers import narrow_ffn
    from textcls.model.layer import FeedForwardBlock

    torch.manual_seed(0)
    block = FeedForwardBlock(8, 12, "gelu", 0.0, 1e-12, pre_norm=False)
    with torch.no_grad():
        block.down.weight[:, 3] = 0.0  # the most active neuron, which adds nothing to the output
        block.up.bias[3] = 10.0
    x = torch.randn(500, 8)
    act = F.gelu(block.up(x)).detach()
    use = [torch.stack([act.mean(0), act.abs().mean(0)])]
    state = {f"encoder.ffn.0.{k}": v.detach().clone() for k, v in block.state_dict().items()}
    out = narrow_ffn(state, 5, use)
    score = act.abs().mean(0) * block.down.weight.detach().norm(dim=0)
    keep = sorted(score.topk(5).indices.tolist())
    assert 3 not in keep
    assert torch.equal(out["encoder.ffn.0.up.weight"], state["encoder.ffn.0.up.weight"][keep])
    assert torch.equal(out["encoder.ffn.0.down.weight"], state["encoder.ffn.0.down.weight"][:, keep])
    narrow = FeedForwardBlock(8, 5, "gelu", 0.0, 1e-12, pre_norm=False)
    narrow.load_state_dict({k.removeprefix("encoder.ffn.0."): v for k, v in out.items()})
    with torch.no_grad():  # over the texts the use was measured on, the block's output keeps its mean
        full_mean = block.down(F.gelu(block.up(x))).mean(0)
        cut_mean = narrow.down(F.gelu(narrow.up(x))).mean(0)
    torch.testing.assert_close(cut_mean, full_mean, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="cannot widen"):
        narrow_ffn(state, 13, use)


def test_neuron_use_counts_the_tokens_of_each_text_and_no_padding(deep_teacher):
    from textcls.distill.layers import neuron_use

    teacher = load_teacher(deep_teacher)
    model, tokenizer, data = teacher.single()
    texts = ["a short one", "a rather longer text that the batch pads the short one to fit"]
    ids, _ = encode_texts(tokenizer, texts, None, 64, data.truncation, data.head_tokens)
    seen = []
    hook = model.encoder.ffn[1].up.register_forward_hook(lambda m, i, o: seen.append(F.gelu(o)[0]))
    with torch.inference_mode():
        for row in ids:  # each text alone: nothing to pad
            model(torch.tensor([row]), torch.ones(1, len(row), dtype=torch.bool), None)
    hook.remove()
    tokens = torch.cat(seen)
    use = neuron_use(teacher, texts, 2, 64)
    assert len(use) == 2 and use[1].shape == (2, model.cfg.intermediate_size)
    torch.testing.assert_close(use[1][0], tokens.mean(0), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(use[1][1], tokens.abs().mean(0), atol=1e-5, rtol=1e-4)


def test_a_layers_student_takes_the_feed_forward_width_it_is_given(deep_teacher, tmp_path):
    sets = ["train.max_steps=1", "distill.augment_copies=1"]
    inter = load_teacher(deep_teacher).single()[0].cfg.intermediate_size
    distill(deep_teacher, None, [*sets, f"model.intermediate_size={inter // 4}"], output=tmp_path / "narrow",
            budget=120, quiet=True)
    weights = load_file(str(tmp_path / "narrow" / "model.safetensors"))
    assert weights["encoder.ffn.0.up.weight"].shape == (inter // 4, 48)
    assert weights["encoder.ffn.0.down.weight"].shape == (48, inter // 4)
    run = load_run(tmp_path / "narrow")
    assert run.model.cfg.intermediate_size == inter // 4
    assert run_predictor(run).predict_proba(["a fine film"]).shape == (1, 2)
    with pytest.raises(ConfigError, match=f"model.intermediate_size: {inter + 1}.*{inter} or less"):
        distill(deep_teacher, None, [*sets, f"model.intermediate_size={inter + 1}"], output=tmp_path / "wide",
                budget=120, quiet=True)
    assert not (tmp_path / "wide").exists()


def test_a_student_exports_to_onnx_and_serves_like_any_run(teacher_run, tmp_path):
    """The issue's "export and serve work on it": the student's ONNX file (checked against the run by
    onnxruntime on export) and its HTTP API give the run's own probabilities."""
    pytest.importorskip("onnxruntime")
    testclient = pytest.importorskip("fastapi.testclient")
    from textcls.predictor import run_predictor
    from textcls.serve.app import build_app
    from textcls.serve.options import ServeOptions

    out = tmp_path / "student"
    distill(teacher_run, student_yaml(tmp_path / "s.yaml"), output=out, quiet=True)
    exported = run_cli("export", str(out), "--format", "onnx", "--output", str(tmp_path / "student.onnx"))
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "student.onnx").stat().st_size > 0
    run = load_run(out)
    predictor = run_predictor(run)
    texts = ["a quietly moving film", "the worst movie of the year"]
    app = build_app(run, predictor, ServeOptions())
    with testclient.TestClient(app, raise_server_exceptions=False) as client:  # the lifespan starts the batcher
        served = client.post("/predict", json={"texts": texts, "top_k": len(run.labels)})
        bad = client.post("/predict", json={"text": 3})
    assert served.status_code == 200, served.text
    expected = predictor.predict_proba(texts)
    got = [[{t["label"]: t["probability"] for t in item["top_k"]}[label] for label in run.labels]
           for item in served.json()["predictions"]]
    assert np.allclose(got, expected, atol=1e-5)
    assert 400 <= bad.status_code < 500  # a bad request: 4xx with a message, never 5xx
