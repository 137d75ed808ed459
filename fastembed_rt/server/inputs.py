"""Request inputs → token ids as the model takes them: truncation left or right, or a clear refusal.

Runs on the tokenizer thread pool, never on the event loop."""

from __future__ import annotations

from ..engine import Embedder
from ..tokenization import CHARS_PER_KEPT_TOKEN, TextTokenizer, clone_tokenizer
from .errors import RequestError
from .schemas import Inputs


class RequestTokenizer:
    def __init__(self, embedder: Embedder):
        self.embedder = embedder
        self.max_length = embedder.max_seq_length
        self.vocab_size = int(embedder.spec.config.get("vocab_size") or embedder.spec.tokenizer.get_vocab_size(with_added_tokens=True))
        base, lower = embedder.spec.tokenizer, embedder.spec.do_lower_case
        self._truncating = {
            d: TextTokenizer(clone_tokenizer(base, self.max_length, d), self.max_length, lower) for d in ("right", "left")
        }
        self._whole = TextTokenizer(clone_tokenizer(base, None), self.max_length, lower)  # token counts in error messages
        self._prompt_skip: dict[str, int] = {}

    def texts(self, inputs: Inputs, prompt: str, truncate: bool, direction: str) -> tuple[list[list[int]], list[int]]:
        """Token ids of `prompt + text` for each of the inputs' texts, and the prompt tokens pooling leaves out of each."""
        texts = inputs.texts
        tokenized = self._truncating[direction].encode([prompt + t for t in texts] if prompt else texts)
        if not truncate and tokenized.truncated:
            i = tokenized.overflowed.index(True)
            raise self._too_long(inputs.field, inputs.name(i), prompt + texts[i])
        skip = self._skip(prompt)
        # Left truncation cuts the prompt off the front: then no prompt tokens are left to leave out.
        skips = [0 if (over and direction == "left") else skip for over in tokenized.overflowed]
        return tokenized.ids, skips

    def token_ids(self, inputs: Inputs, truncate: bool, direction: str) -> tuple[list[list[int]], list[int]]:
        """Token ids sent as such: checked against the vocabulary, then taken as they are (no special tokens added)."""
        out = []
        for i, seq in enumerate(inputs.ids):
            bad = next((t for t in seq if not 0 <= t < self.vocab_size), None)
            if bad is not None:
                raise RequestError(422, f"{inputs.name(i)} holds token id {bad}, outside the vocabulary [0, {self.vocab_size})", inputs.field)
            if len(seq) > self.max_length:
                if not truncate:
                    raise self._too_long(inputs.field, inputs.name(i), seq)
                seq = seq[: self.max_length] if direction == "right" else seq[-self.max_length :]
            out.append(seq)
        return out, [0] * len(out)

    def tokenize(self, texts: list[str], prompt: str, add_special_tokens: bool, truncate: bool, direction: str) -> list[list[dict]]:
        """TEI's /tokenize: every token with its id, text, whether it is special, and its character span. Bounded as
        /embed is: an input over the model's maximum is refused unless truncated."""
        tokenizer = self._truncating[direction]
        full = tokenizer.prepare([prompt + t for t in texts])  # the prompt lowercased too, as encode() does
        encodings, starts = tokenizer.encodings(full, add_special_tokens=add_special_tokens, offsets=True)
        out = []
        for i, (text, encoding, shift) in enumerate(zip(full, encodings, starts)):
            if encoding.overflowing and not truncate:
                raise self._too_long("inputs", f"inputs[{i}]", text)
            tokens = []
            for token_id, token, special, (start, stop) in zip(
                encoding.ids, encoding.tokens, encoding.special_tokens_mask, encoding.offsets
            ):
                start, stop = start + shift, stop + shift
                tokens.append({"id": token_id, "text": token if special else text[start:stop],
                               "special": bool(special), "start": None if special else start,
                               "stop": None if special else stop})  # fmt: skip
            out.append(tokens)
        return out

    def _skip(self, prompt: str) -> int:
        if prompt not in self._prompt_skip:
            self._prompt_skip[prompt] = self.embedder.prompt_skip(prompt)
        return self._prompt_skip[prompt]

    def _too_long(self, field: str, name: str, text_or_ids: str | list[int]) -> RequestError:
        """413 naming the input and its length: its token count where counting is cheap (a text of at most
        CHARS_PER_KEPT_TOKEN characters per allowed token, or token ids), else its character count."""
        if isinstance(text_or_ids, list):
            length = f"{len(text_or_ids)} tokens"
        elif len(text_or_ids) <= self.max_length * CHARS_PER_KEPT_TOKEN:
            length = f"{len(self._whole.encode([text_or_ids]).ids[0])} tokens"
        else:
            length = f"{len(text_or_ids)} characters"
        return RequestError(
            413,
            f"{name} has {length}, more than the model's maximum of {self.max_length} tokens; "
            "shorten it, or send truncate=true (or start the server with --auto-truncate)",
            field,
        )
