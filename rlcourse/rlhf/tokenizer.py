r"""Tokenizers: a word-level one for the toy task, GPT-2's or a chat model's for the real thing.

The toy task's language has a few dozen words, so each word is one token. Four special
tokens come first::

    <pad> = 0   fills a batch out to its longest sequence (masked out of every loss)
    <bos> = 1   begins a sequence
    <eos> = 2   ends a response (the policy learns when to stop)
    <sep> = 3   separates the prompt from the response

:class:`WordTokenizer` uses the attribute names of Hugging Face tokenizers
(``pad_token_id``, ``eos_token_id``, ``encode``, ``decode``, ``len(tokenizer)``), so the
rest of the lesson can take either kind. :func:`load_tokenizer` picks one.

A chat model (one whose tokenizer has a chat template, like SmolLM2's ChatML) is lesson 7's
layout ``[<bos>] prompt [<sep>] response [<eos>]`` with <bos> = ``<|im_start|>``, <sep> =
the newline that closes the assistant's header and <eos> = ``<|im_end|>``::

    <|im_start|> system\n…<|im_end|>\n<|im_start|>user\nWhat is 12 + 35?<|im_end|>\n<|im_start|>assistant \n 47 <|im_end|>
    └── bos ───┘ └────────────────────────── prompt (chat_prompt) ────────────────────────────┘ └sep┘ └resp┘ └── eos ──┘

:class:`ChatTokenizer` holds the Hugging Face tokenizer and says which tokens those are;
:func:`chat_prompt` renders a question with the chat template and cuts off its first and last
token, which the batching code puts back as <bos> and <sep>.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from rlcourse.rlhf import task
from rlcourse.rlhf.model import model_source
from rlcourse.run import atomic_write

PAD, BOS, EOS, SEP = "<pad>", "<bos>", "<eos>", "<sep>"
SPECIAL_TOKENS = (PAD, BOS, EOS, SEP)
#: The file :meth:`WordTokenizer.save` writes (not ``tokenizer.json``, which is Hugging Face's).
FILENAME = "word_tokenizer.json"


class WordTokenizer:
    """One token per word: ids 0–3 are the special tokens, then ``words`` in order."""

    def __init__(self, words: Sequence[str]):
        tokens = list(SPECIAL_TOKENS) + list(words)
        duplicates = sorted(t for t, count in Counter(tokens).items() if count > 1)
        if duplicates:
            raise ValueError(f"the vocabulary lists {', '.join(map(repr, duplicates))} more than once")
        bad = [t for t in words if not isinstance(t, str) or not t or t.split() != [t]]
        if bad:
            raise ValueError(f"vocabulary entries must be single words without spaces, not {bad[0]!r}")
        self.tokens: list[str] = tokens
        self.ids: dict[str, int] = {t: i for i, t in enumerate(tokens)}
        self.pad_token_id, self.bos_token_id = self.ids[PAD], self.ids[BOS]
        self.eos_token_id, self.sep_token_id = self.ids[EOS], self.ids[SEP]

    @classmethod
    def toy(cls) -> WordTokenizer:
        """The tokenizer of the shipped task (:data:`rlcourse.rlhf.task.VOCABULARY`)."""
        return cls(task.VOCABULARY)

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str | Sequence[str]) -> list[int]:
        """Token ids of ``text`` (a string split on whitespace, or a list of words).

        Adds no special tokens; a special token written in the text (``"<eos>"``) is encoded.
        Raises ValueError naming the first word that is not in the vocabulary.
        """
        items = text.split() if isinstance(text, str) else list(text)
        ids = []
        for position, word in enumerate(items):
            if word not in self.ids:
                raise ValueError(
                    f"unknown word {word!r} at position {position} of {' '.join(map(str, items))!r}: "
                    f"it is not in the tokenizer's vocabulary of {self.vocab_size} tokens"
                )
            ids.append(self.ids[word])
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """The words of ``ids`` joined by spaces; padding is always skipped, the other special
        tokens too if ``skip_special_tokens``."""
        skip = set(range(len(SPECIAL_TOKENS))) if skip_special_tokens else {self.pad_token_id}
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"token id {i} is out of range: it must be in [0, {self.vocab_size - 1}]")
            if i not in skip:
                out.append(self.tokens[i])
        return " ".join(out)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the vocabulary to ``directory/word_tokenizer.json``; return the path."""
        path = Path(directory) / FILENAME
        text = json.dumps({"type": "WordTokenizer", "tokens": self.tokens}, indent=1) + "\n"
        atomic_write(path, lambda f: f.write(text.encode("utf-8")))
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike) -> WordTokenizer:
        """Read back a tokenizer written by :meth:`save`."""
        path = Path(directory) / FILENAME
        data = json.loads(path.read_text(encoding="utf-8"))
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(tokens, list) or tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(
                f'{path} is not a WordTokenizer file: it must hold {{"tokens": [{", ".join(SPECIAL_TOKENS)}, ...]}}'
            )
        return cls(tokens[len(SPECIAL_TOKENS) :])

    def __repr__(self) -> str:
        return f"WordTokenizer(vocab_size={self.vocab_size})"


class ChatTokenizer:
    """A Hugging Face chat model's tokenizer in lesson 7's layout (see the module docstring).

    ``bos_token_id`` is the first token of a rendered prompt, ``sep_token_id`` its last,
    ``eos_token_id`` the end of a turn; ``encode`` adds no special tokens (the layout adds
    them), and ``save_pretrained`` writes the Hugging Face tokenizer with its chat template.
    """

    def __init__(self, hf_tokenizer, system: str | None = None):
        self.hf = hf_tokenizer
        self.system = system  # the system message of every prompt (None: the template's default)
        ids = self._render_ids("x")
        self.bos_token_id, self.sep_token_id = ids[0], ids[-1]
        self.eos_token_id = hf_tokenizer.eos_token_id
        self.pad_token_id = hf_tokenizer.pad_token_id if hf_tokenizer.pad_token_id is not None else self.eos_token_id

    def _render_ids(self, question: str) -> list[int]:
        messages = [{"role": "user", "content": question}]
        if self.system is not None:
            messages.insert(0, {"role": "system", "content": self.system})
        text = self.hf.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.encode(text)

    def chat_prompt(self, question: str) -> str:
        """The prompt text of ``question``: the chat template's rendering without its first
        (<bos>) and last (<sep>) token, so that [<bos>] prompt [<sep>] is the rendering."""
        return self.decode(self._render_ids(question)[1:-1])

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def __len__(self) -> int:
        return len(self.hf)

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        self.hf.save_pretrained(directory)

    def __repr__(self) -> str:
        return f"ChatTokenizer({type(self.hf).__name__}, vocab_size={self.vocab_size})"


def chat_prompt(tokenizer, question: str) -> str:
    """``question`` as a prompt for ``tokenizer``: rendered by the chat template for a
    :class:`ChatTokenizer`, unchanged for any other."""
    return tokenizer.chat_prompt(question) if isinstance(tokenizer, ChatTokenizer) else question


def load_tokenizer(name_or_dir: str | os.PathLike = "toy"):
    """The tokenizer for a model name, directory or GGUF file (:func:`rlcourse.rlhf.model.model_source`).

    ``"toy"`` gives the shipped :class:`WordTokenizer`; a directory holding
    ``word_tokenizer.json`` gives that one back. Anything else (``"gpt2"``, a folder with
    GPT-2's files, ``"smollm2"``) goes to ``transformers.AutoTokenizer.from_pretrained``. A
    tokenizer with a chat template comes back as a :class:`ChatTokenizer`; one without (GPT-2)
    as it is, with the pad and separator tokens set to the end-of-text token when it has none
    (GPT-2 has neither): the prompt and the response are then separated by ``<|endoftext|>``.
    """
    if str(name_or_dir) == "toy":
        return WordTokenizer.toy()
    if (Path(name_or_dir) / FILENAME).is_file():
        return WordTokenizer.load(name_or_dir)
    from transformers import AutoTokenizer

    directory, gguf_file = model_source(name_or_dir)
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file)
    if tokenizer.chat_template:
        return ChatTokenizer(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.sep_token is None:  # GPT-2 has one special token, <|endoftext|>, for all of these
        tokenizer.sep_token = tokenizer.eos_token
    return tokenizer
