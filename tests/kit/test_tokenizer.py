"""`ftkit.io.tokenizer.get_tokenizer`: GPT-2's BPE, built offline, equal to tiktoken's own "gpt2"."""

from __future__ import annotations

import hashlib

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from ftkit.asserts import assert_equal
from ftkit.io.assets import ASSETS, fetch
from ftkit.io.tokenizer import get_tokenizer


@pytest.fixture(scope="module")
def tiktoken_gpt2(tmp_path_factory) -> tiktoken.Encoding:
    """tiktoken's own "gpt2" encoding, offline: its cache pre-filled from the verified mirror files.

    tiktoken caches a download under TIKTOKEN_CACHE_DIR at sha1(URL) and checks the cached
    bytes against its own pinned SHA-256, so this is an independent build of the encoding.
    """
    cache = tmp_path_factory.mktemp("tiktoken-cache")
    for name in ("gpt2-vocab-bpe", "gpt2-encoder-json"):
        key = hashlib.sha1(ASSETS[name].url.encode()).hexdigest()
        (cache / key).write_bytes(fetch(name, progress=False).read_bytes())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIKTOKEN_CACHE_DIR", str(cache))
        # Built directly, not via get_encoding: that registry caches process-wide.
        from tiktoken_ext.openai_public import gpt2

        return tiktoken.Encoding(**gpt2())


def test_endoftext_is_50256():
    tok = get_tokenizer()
    assert_equal(
        tok.encode("<|endoftext|>", allowed_special={"<|endoftext|>"}),
        [50256],
        name="encode('<|endoftext|>')",
        why="GPT-2 has one special token, <|endoftext|>, the last of its 50,257 ids (book §2.5, §7.3)",
    )
    assert tok.n_vocab == 50257


def test_book_example_do_you_have_time():
    assert_equal(
        get_tokenizer().encode("Do you have time"),
        [5211, 345, 423, 640],
        name="encode('Do you have time')",
        why="the book prints these ids when it explains the classifier's last token (§6.5)",
    )


def test_book_example_section_2_5():
    text = "Hello, do you like tea? <|endoftext|> In the sunlit terraces of someunknownPlace."
    ids = get_tokenizer().encode(text, allowed_special={"<|endoftext|>"})
    assert_equal(
        ids,
        [
            15496,
            11,
            466,
            345,
            588,
            8887,
            30,
            220,
            50256,
            554,
            262,
            4252,
            18250,
            8812,
            2114,
            286,
            617,
            34680,
            27271,
            13,
        ],
        name="encode(§2.5 example)",
        why="byte-pair encoding splits the unknown word 'someunknownPlace' into known subwords (§2.5)",
    )
    assert get_tokenizer().decode(ids) == text


def test_tokenizer_is_cached():
    assert get_tokenizer() is get_tokenizer()


def test_whole_vocabulary_equals_tiktoken(tiktoken_gpt2):
    ours = get_tokenizer()
    assert ours.n_vocab == tiktoken_gpt2.n_vocab
    for i in range(ours.n_vocab):
        if ours.decode_single_token_bytes(i) != tiktoken_gpt2.decode_single_token_bytes(i):
            pytest.fail(
                f"token {i}: ours {ours.decode_single_token_bytes(i)!r} "
                f"!= tiktoken's {tiktoken_gpt2.decode_single_token_bytes(i)!r}"
            )


# Characters where GPT-2's pre-tokenizer regex has its cases: contractions, spaces before
# words/digits/punctuation, runs of whitespace, non-ASCII letters and multi-byte symbols.
TRICKY = list(" \n\t'sdmtlvreSDa09.,!?-_<|>ééß中文😀\u00a0\u200b")
PIECES = [
    "'s",
    "'t",
    "'re",
    "'ve",
    "'m",
    "'ll",
    "'d",
    "'LL",
    " ",
    "   ",
    "\n\n",
    "\t",
    "Hello",
    " world",
    "2024",
    " 42",
    "?!",
    " ...",
    "naïve",
    " 中文",
    "😀",
    " <|endoftext|>",
]
STRINGS = st.lists(
    st.one_of(
        st.text(max_size=40),
        st.text(alphabet=st.sampled_from(TRICKY), max_size=40),
        st.lists(st.sampled_from(PIECES), max_size=12).map("".join),
    ),
    min_size=10,
    max_size=10,
)


@settings(max_examples=40, deadline=None)  # 40 batches x 10 strings = 400 strings
@given(STRINGS)
def test_encodes_like_tiktoken(tiktoken_gpt2, texts):
    ours = get_tokenizer()
    for text in texts:
        assert ours.encode(text, disallowed_special=()) == tiktoken_gpt2.encode(
            text, disallowed_special=()
        ), f"encode({text!r}) differs from tiktoken's gpt2"
