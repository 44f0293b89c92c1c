"""When one generated answer is done.

A row stops at the first of:

- **EOS** (the fine-tuned models learn it);
- **its JSON is complete** (``stop_at_json_end``), decided by the scorer's own extraction
  (:func:`scaling.metrics.extract_json`): a row stops exactly when the text so far already
  holds the value the score will read, so ``'Answer [v1]: {"a": 1}'`` runs on past the
  bracketed ``[v1]`` (not JSON) and stops after ``}``. Once ``extract_json`` finds a value
  in a prefix, no continuation changes what it finds (earlier candidates failed before the
  end of the prefix; the found value is closed), so stopping there never changes a score;
- **a loop** (``looped``): the tail is one block of tokens repeated, which in an extraction
  answer means the model copies the same record or digit again and again
  (:func:`repeated_tail`);
- **its cap**: the run's ``max_new_tokens`` or the row's own prompt-bounded cap (see
  :func:`scaling.decode.config.row_caps`), recorded as ``capped``.
"""

from __future__ import annotations

from array import array
from typing import Sequence

from scaling.metrics import extract_json


class TokenText:
    """Decoded text of single token ids, cached (decoding is the slow part of tracking)."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.cache: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        text = self.cache.get(token_id)
        if text is None:
            text = self.tokenizer.decode([token_id], skip_special_tokens=True)
            self.cache[token_id] = text
        return text


def repeated_tail(tokens: array, min_span: int, min_repeats: int, max_period: int, probe: int = 16) -> bool:
    """True when the last tokens are one block of ``p <= max_period`` tokens repeated, over at
    least ``max(min_span, min_repeats * p)`` tokens.

    Short periods need the whole span (a digit run ``2222…`` or a word loop: >= 4 repeats of
    a <= 64-token block over 256 tokens), long ones ``min_repeats`` whole copies: a model that
    writes the same 90-token record three times running is not extracting any more (seen:
    runaway arrays that ran to the 2,853-token cap). Periods are found from earlier
    occurrences of the last ``probe`` tokens (a C-speed ``bytes.rfind`` on the int32 token
    buffer), so a check costs microseconds, not ``max_period`` comparisons.
    """
    n = len(tokens)
    if n < max(min_span, probe + 1):
        return False
    width = tokens.itemsize
    buf = tokens.tobytes()
    key = buf[-probe * width:]
    end = len(buf) - width  # the occurrence must end before the last token
    while True:
        at = buf.rfind(key, 0, end)
        if at < 0:
            return False
        if at % width:  # matched across token boundaries
            end = at + len(key) - 1
            continue
        period = n - probe - at // width
        if period > max_period:
            return False
        span = max(min_span, min_repeats * period)
        if span <= n and buf[len(buf) - (span - period) * width:] == buf[len(buf) - span * width: len(buf) - period * width]:
            return True
        end = at + len(key) - 1


def is_loop(tokens: Sequence[int], max_period: int, min_repeats: int = 4) -> bool:
    """True when ``tokens`` as a whole is one block of at most ``max_period`` tokens repeated
    (at least ``min_repeats`` times)."""
    buf = array("q", tokens)
    return repeated_tail(buf, len(buf), min_repeats, max_period, probe=min(16, max(1, len(buf) // min_repeats)))


class RowStop:
    """The stop state of one generated sequence (see the module docstring for the rules)."""

    __slots__ = ("token_text", "eos_ids", "stop_at_json_end", "loop_min_tokens", "loop_min_repeats",
                 "loop_max_period", "cap", "ids", "text", "done", "hit_eos", "looped", "capped", "_tokens")

    CHECK_EVERY = 8
    """Tokens between loop checks: cheap enough to run often, and a loop is caught within 8 tokens."""

    def __init__(self, token_text: TokenText, eos_ids: set[int], stop_at_json_end: bool = True,
                 loop_min_tokens: int | None = 256, loop_max_period: int = 768, loop_min_repeats: int = 3,
                 cap: int | None = None) -> None:
        self.token_text = token_text
        self.eos_ids = eos_ids
        self.stop_at_json_end = stop_at_json_end
        self.loop_min_tokens = loop_min_tokens
        self.loop_max_period = loop_max_period
        self.loop_min_repeats = loop_min_repeats
        self.cap = cap
        self.ids: list[int] = []
        self._tokens = array("q")
        self.text = ""
        self.done = self.hit_eos = self.looped = self.capped = False

    @property
    def n_generated(self) -> int:
        return len(self.ids)

    def push(self, tok: int) -> bool:
        """Record one generated token; return True when the sequence is done."""
        if self.done:
            return True
        self.ids.append(tok)
        self._tokens.append(tok)
        if tok in self.eos_ids:
            self.hit_eos = self.done = True
            return True
        piece = self.token_text(tok)
        self.text += piece
        if self.stop_at_json_end and ("}" in piece or "]" in piece) and json_complete(self.text):
            self.done = True
        elif self.loop_min_tokens and len(self.ids) % self.CHECK_EVERY == 0 and repeated_tail(
                self._tokens, self.loop_min_tokens, self.loop_min_repeats, self.loop_max_period):
            self.looped = self.done = True
        elif self.cap is not None and len(self.ids) >= self.cap:
            self.capped = self.done = True
        return self.done


def json_complete(text: str) -> bool:
    """Does ``text`` already hold the JSON value the score will extract? (One definition of
    "the answer is complete", shared by the stop rule and the scorer.)"""
    return extract_json(text).ok


__all__ = ["RowStop", "TokenText", "is_loop", "json_complete", "repeated_tail"]
