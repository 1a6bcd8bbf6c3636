"""The chapter-7 recipe (`ftkit.recipes.instruct`): files, resume, exercises 7.1-7.4, Alpaca data.

Runs on the `tiny` random-init model with a handful of entries, so it checks the
plumbing (what is trained on, what is saved, what resumes), not the book's losses;
those are checked with real GPT-2 weights under the `weights`/`slow` markers.
"""

from __future__ import annotations

import json

import pytest
import torch

from ftkit.asserts import assert_equal, assert_tensor_equal
from ftkit.data.instruction import create_instruction_loaders, load_instruction_data
from ftkit.engine import trainer
from ftkit.io.tokenizer import get_tokenizer
from ftkit.recipes import instruct as recipe
from reference.collate import IGNORE_INDEX
from reference.instruction_data import format_input, split_data

LIMIT = 10  # 8 train entries, 1 test, 1 validation
# Batches of 2 cut to 64 tokens: 4 quick steps per epoch, so epoch 2 holds an evaluation (step 5).
QUICK = {
    "model": "tiny",
    "limit": LIMIT,
    "batch_size": 2,
    "allowed_max_length": 64,
    "device": "cpu",
}


def quiet(*_args) -> None:
    """A `say` that drops the recipe's progress lines."""


def test_model_file_name_is_the_books():
    assert_equal(
        recipe.model_file_name("gpt2-medium (355M)"),
        "gpt2-medium355M-sft.pth",
        name="file name",
        why="the book saves f\"{re.sub(r'[ ()]', '', CHOOSE_MODEL)}-sft.pth\" (§7.6)",
    )
    assert_equal(recipe.model_file_name("355M"), "gpt2-medium355M-sft.pth", name="alias")
    assert_equal(recipe.model_file_name("tiny"), "tiny-sft.pth", name="tiny")
    with pytest.raises(ValueError, match="unknown model preset"):
        recipe.model_file_name("gpt5")


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory):
    """One uninterrupted 2-epoch run on tiny, shared by the tests that only read it."""
    lines: list[str] = []
    out = tmp_path_factory.mktemp("whole")
    return recipe.finetune(out, epochs=2, say=lines.append, **QUICK), lines


def test_finetune_writes_model_config_plot_and_prints_initial_losses_first(whole_run):
    result, lines = whole_run
    paths = result["paths"]
    for key in ("model", "config", "checkpoint", "plot"):
        assert paths[key].is_file(), f"finetune should write its {key} file {paths[key]}"
    record = json.loads(paths["config"].read_text())
    assert_equal(record["config"], recipe.get_config("tiny"), name="saved model config")
    assert_equal(
        (record["style"], record["mask_instruction"], record["limit"], record["epochs"]),
        ("alpaca", False, LIMIT, 2),
        name="saved (style, mask_instruction, limit, epochs)",
    )
    reloaded = recipe.GPTModel(record["config"])
    reloaded.load_state_dict(torch.load(paths["model"], weights_only=True))  # strict: all keys
    warned = [line for line in lines if "randomly initialised" in line]
    assert warned, "a tiny (random-init) run must say loudly that it is not GPT-2"
    losses = [line.split(":")[0] for line in lines if " loss: " in line]
    assert losses[:2] == ["Training loss", "Validation loss"], (
        f"the initial losses are printed first, as the book's §7.6; got lines {lines}"
    )
    assert len(result["history"]["val_losses"]) == 2, "evaluations at steps 0 and 5"


def test_resume_after_an_interruption_gives_the_same_losses(whole_run, tmp_path, monkeypatch):
    whole, _ = whole_run
    real_save = trainer.save_checkpoint

    def save_then_interrupt(path, *, history, **kwargs):
        real_save(path, history=history, **kwargs)
        if history.epochs_done == 1:
            raise KeyboardInterrupt  # as if Ctrl-C hit right after the first epoch

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        recipe.finetune(tmp_path, epochs=2, say=quiet, **QUICK)
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)

    with pytest.raises(ValueError, match=r"style: checkpoint 'alpaca' vs now 'phi3'"):
        recipe.finetune(tmp_path, epochs=2, resume=True, say=quiet, **{**QUICK, "style": "phi3"})

    resumed = recipe.finetune(tmp_path, epochs=2, resume=True, say=quiet, **QUICK)
    for key in ("train_losses", "val_losses", "track_tokens_seen"):
        assert_equal(
            resumed["history"][key],
            whole["history"][key],
            name=key,
            why="the checkpoint restores model, optimizer, RNG and history: nothing may differ",
        )
    a = torch.load(whole["paths"]["model"], weights_only=True)
    b = torch.load(resumed["paths"]["model"], weights_only=True)
    for name in a:
        assert_tensor_equal(b[name], a[name], name=name, why="resumed training ends identical")


def first_train_batch(style="alpaca", mask_instruction=False, allowed_max_length=1024, data=None):
    data = data if data is not None else load_instruction_data()[:LIMIT]
    train, test, val = split_data(data)
    loader, _, _ = create_instruction_loaders(
        train,
        val,
        test,
        get_tokenizer(),
        batch_size=8,
        allowed_max_length=allowed_max_length,
        style=style,
        mask_instruction=mask_instruction,
    )
    return next(iter(loader)), loader


def test_exercise_7_2_masks_the_instruction_in_the_targets():
    tokenizer = get_tokenizer()
    (inputs, targets), loader = first_train_batch(mask_instruction=True)
    (_, plain_targets), _ = first_train_batch(mask_instruction=False)
    assert (targets == IGNORE_INDEX).sum() > (plain_targets == IGNORE_INDEX).sum(), (
        "masking the instruction must ignore more targets than padding alone"
    )
    for row in range(inputs.shape[0]):
        text = tokenizer.decode([t for t in inputs[row].tolist() if t != 50256])
        prompt = text[: text.index("\n\n### Response:")]
        prompt_len = len(tokenizer.encode(prompt))
        assert_tensor_equal(
            targets[row, : prompt_len - 1],
            torch.full((prompt_len - 1,), IGNORE_INDEX),
            name=f"targets[{row}, :prompt_length-1]",
            why="exercise 7.2: targets that predict prompt tokens are ignored in the loss",
        )
        assert targets[row, prompt_len - 1] != IGNORE_INDEX, (
            f"row {row}: the first response-header target must still be trained"
        )


def test_exercise_7_1_phi3_prompt_is_used_end_to_end(tmp_path, monkeypatch):
    (inputs, _), _ = first_train_batch(style="phi3")
    text = get_tokenizer().decode(inputs[0].tolist())
    assert text.startswith("<|user|>\n") and "\n<|assistant|>:\n" in text, text[:200]
    assert "### Instruction" not in text, "phi3 style must not contain the Alpaca headers"

    seen = {}
    from ftkit.engine.backend import Backend
    from ftkit.recipes import runtime

    real_steps, real_fit = Backend.next_token_steps, runtime.fit

    def steps_spy(self, tokenizer, start_context, **options):
        seen["start_context"] = start_context
        return real_steps(self, tokenizer, start_context, **options)

    def fit_spy(*args, **kwargs):
        seen["first_batch"] = next(iter(args[1]))[0]
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(Backend, "next_token_steps", steps_spy)
    monkeypatch.setattr(runtime, "fit", fit_spy)
    result = recipe.finetune(tmp_path, epochs=1, style="phi3", say=quiet, **QUICK)
    val_first = split_data(load_instruction_data()[:LIMIT])[2][0]
    assert_equal(
        seen["start_context"],
        format_input(val_first, style="phi3"),
        name="start_context",
        why="the sample printed each epoch starts from the first validation prompt, phi3 style",
    )
    trained_on = get_tokenizer().decode(seen["first_batch"][0].tolist())
    assert trained_on.startswith("<|user|>"), trained_on[:100]
    assert json.loads(result["paths"]["config"].read_text())["style"] == "phi3"


def test_exercise_7_4_lora_trains_only_adapters_and_saves_a_plain_model(tmp_path):
    lines: list[str] = []
    result = recipe.finetune(tmp_path, epochs=1, lora_rank=2, say=lines.append, **QUICK)
    counts = [line for line in lines if "trainable" in line]
    assert len(counts) == 3 and counts[1].endswith(": 0"), counts
    state = torch.load(result["paths"]["model"], weights_only=True)
    assert not any("lora" in k for k in state), "the saved model has LoRA merged into W"
    fresh = recipe.GPTModel(recipe.get_config("tiny"))
    fresh.load_state_dict(state)  # strict: the plain GPTModel layout
    torch.manual_seed(123)
    untouched = recipe.GPTModel(recipe.get_config("tiny")).state_dict()
    assert_tensor_equal(
        state["tok_emb.weight"],
        untouched["tok_emb.weight"],
        name="tok_emb.weight",
        why="LoRA adapts only Linear layers; the frozen embeddings never change",
    )
    changed = (
        state["trf_blocks.0.att.W_query.weight"] - untouched["trf_blocks.0.att.W_query.weight"]
    )
    assert changed.abs().max() > 0, "the merged W_query should include the trained LoRA update"


def test_sort_by_length_cuts_padding_on_the_book_data():
    tokenizer = get_tokenizer()
    train, _, val = split_data(load_instruction_data())

    def padded_tokens(sort_by_length: bool) -> tuple[int, int]:
        loader, _, _ = create_instruction_loaders(train, val, [], tokenizer, batch_size=8)
        if sort_by_length:
            loader = recipe.bucket_by_length(loader)
        batches = [x for x, _ in loader]
        padding = sum(int((x == 50256).sum()) for x in batches)  # the data has no end-of-text
        return padding, sum(x.shape[0] for x in batches)

    book_padding, book_rows = padded_tokens(False)
    sorted_padding, sorted_rows = padded_tokens(True)
    assert_equal(sorted_rows, book_rows, name="rows per epoch (drop_last kept)")
    assert sorted_padding < 0.25 * book_padding, (
        f"bucketing by length should cut the padding tokens per epoch: {sorted_padding} vs "
        f"{book_padding} in the book's shuffled order"
    )


def test_bad_dataset_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        recipe.finetune(tmp_path, model="tiny", dataset=str(tmp_path / "nope.json"), say=quiet)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps([{"instruction": "x", "output": "y"}] * 10))
    with pytest.raises(ValueError, match="entry 0"):
        recipe.finetune(tmp_path, model="tiny", dataset=str(broken), say=quiet)


@pytest.mark.slow
@pytest.mark.weights
def test_book_sft_run_with_gpt2_medium(tmp_path):
    """§7.6: 2 epochs from GPT-2 355M bring the validation loss to ~0.66 (book), and §7.6's sample reads right."""
    from ftkit.io.assets import AssetError
    from reference.evaluation import extract_response
    from reference.generation import generate, text_to_token_ids, token_ids_to_text

    try:
        result = recipe.finetune(tmp_path, device="auto", say=quiet)  # every book default
    except AssetError as err:
        pytest.skip(f"GPT-2 355M weights are not cached (run `ftkit weights fetch 355M`): {err}")
    final_val = result["history"]["val_losses"][-1]
    assert final_val < 0.75, f"validation loss after 2 epochs: {final_val:.3f} (book: ~0.66)"

    model, record = recipe.load_finetuned(tmp_path, recipe.DEFAULT_MODEL, torch.device("cpu"))
    val_first = split_data(load_instruction_data())[2][0]
    prompt = format_input(val_first)
    tokenizer = get_tokenizer()
    ids = generate(model, text_to_token_ids(prompt, tokenizer), 35, 1024, eos_id=50256)
    answer = extract_response(token_ids_to_text(ids, tokenizer), prompt)
    # Book §7.6: "The meal is prepared every day by the chef." (passive voice of the prompt)
    assert answer.startswith("The meal is") and "by the chef" in answer, answer
