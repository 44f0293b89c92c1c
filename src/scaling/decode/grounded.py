"""Grounded decoding: every string leaf a piece of the prompt, every number one written in it.

Every leaf value of an EdgeJSON answer is copied from its prompt: on v3 test all 1,587 string
and 616 number leaves of the medium and complex tiers appear verbatim in the prompt's JSON
string form (4 of 239 simple strings do not: a language code, a normalised address, a status).
A fine-tuned 135M still writes values that are nowhere in it (``"Anticipated"`` for
``Against``). With ``decode.grounded`` each row gets a second mask beside its schema grammar:

- inside a string *value* (not a key), the characters written so far must be a substring of
  the prompt (as it reads inside a JSON string: ``\\n`` for a newline, ``\\"`` for a quote);
- a number's characters must be a substring of the prompt too;
- keys, ``true``/``false``/``null`` and structure are left to the grammar.

The mask is the set of tokens whose bytes keep that true: a walk of the vocabulary's byte trie
in step with a suffix automaton of the prompt (:class:`PromptSubstrings`), visiting only the
prefixes that stay inside the prompt, so a step costs the number of such prefixes, not the
vocabulary. Where the two masks leave no token (an ``enum`` value the prompt spells in
another case, say), the row falls back to its grammar alone for that step, so grounding never
dead-ends a row; these fallbacks are counted.

One engine: xgrammar keeps the schema; this module adds the substring rule on top (xgrammar
0.2 has no substring terminal; llguidance has, but would be a second grammar engine).
"""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np
import torch

__all__ = ["PromptSubstrings", "VocabTrie", "GroundedCursor", "escaped_prompt", "grounded_cursors", "mask_to_prompts",
           "ungrounded_values"]

# Lexer modes of the JSON being written.
_VALUE, _STR_VALUE, _NUMBER, _AFTER, _KEY, _STR_KEY, _COLON, _LITERAL, _END = range(9)
# Modes whose continuations the substring rule does not restrict: a token reaching one of
# them is allowed whatever follows inside it (the grammar still checks it).
_FREE = frozenset({_KEY, _STR_KEY, _COLON, _LITERAL, _END})

_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_WHITESPACE = frozenset(b" \t\n\r")
_NUMBER_START = frozenset(b"-0123456789")
_NUMBER_CHARS = frozenset(b"-+0123456789.eE")
_LETTERS = frozenset(b"abcdefghijklmnopqrstuvwxyz")
_LITERAL_START = frozenset(b"tfn")  # true, false, null
# Bytes worth trying outside strings and numbers (others are not JSON there: the grammar bans them).
_VALUE_BYTES = tuple(sorted(set(b'"{[]tfn \t\n\r') | _NUMBER_START))
_AFTER_BYTES = tuple(b",}] \t\n\r")

_FAIL = None    # the bytes leave the prompt: the token is not allowed
_UNTRACKED = ()  # not JSON as this lexer reads it: left to the grammar


def escaped_prompt(prompt: str) -> bytes:
    """The prompt as it reads inside a JSON string, as the model writes it (UTF-8, not \\u
    escapes: targets are written with ``ensure_ascii=False``)."""
    return json.dumps(prompt, ensure_ascii=False)[1:-1].encode("utf-8")


class PromptSubstrings:
    """Suffix automaton of ``text``: state 0 is the empty string, and a walk from it
    succeeds exactly while the bytes walked form a substring of ``text`` (O(len) states)."""

    __slots__ = ("next",)

    def __init__(self, text: bytes) -> None:
        nxt: list[dict[int, int]] = [{}]
        link, length = [-1], [0]
        last = 0
        for b in text:
            cur = len(nxt)
            nxt.append({})
            link.append(0)
            length.append(length[last] + 1)
            p = last
            while p != -1 and b not in nxt[p]:
                nxt[p][b] = cur
                p = link[p]
            if p != -1:
                q = nxt[p][b]
                if length[p] + 1 == length[q]:
                    link[cur] = q
                else:
                    clone = len(nxt)
                    nxt.append(dict(nxt[q]))
                    link.append(link[q])
                    length.append(length[p] + 1)
                    while p != -1 and nxt[p].get(b) == q:
                        nxt[p][b] = clone
                        p = link[p]
                    link[q] = link[cur] = clone
            last = cur
        self.next = nxt

    def __contains__(self, piece: bytes) -> bool:
        state = 0
        for b in piece:
            state = self.next[state].get(b, -1)
            if state < 0:
                return False
        return True


class VocabTrie:
    """The vocabulary's token bytes as a trie over their sorted order, so that the tokens
    under a node are one contiguous range of :attr:`order` (a whole subtree is allowed in one
    slice). Tokens without bytes (EOS and other special tokens) are always left to the grammar."""

    def __init__(self, token_bytes: Sequence[bytes], vocab_size: int | None = None) -> None:
        self.vocab_size = max(len(token_bytes), vocab_size or 0)
        self.token_bytes = list(token_bytes) + [b""] * (self.vocab_size - len(token_bytes))
        ids = sorted((i for i, b in enumerate(token_bytes) if b), key=lambda i: token_bytes[i])
        self.order = np.asarray(ids, dtype=np.int64)
        self.free = np.ones(self.vocab_size, dtype=bool)
        self.free[self.order] = False
        self.children: list[dict[int, int]] = [{}]
        self.lo, self.hi, self.ends = [0], [len(ids)], [0]  # ends: tokens equal to the node's bytes
        for pos, i in enumerate(ids):
            node = 0
            for b in token_bytes[i]:
                child = self.children[node].get(b)
                if child is None:
                    child = len(self.children)
                    self.children[node][b] = child
                    self.children.append({})
                    self.lo.append(pos)
                    self.hi.append(pos)
                    self.ends.append(0)
                node = child
                self.hi[node] = pos + 1
            self.ends[node] += 1

    @classmethod
    def from_tokenizer_info(cls, info, vocab_size: int) -> "VocabTrie":
        """From xgrammar's ``TokenizerInfo`` (its ``decoded_vocab``: the bytes the grammar sees)."""
        return cls([bytes(b) for b in info.decoded_vocab], vocab_size)


def _step(state: tuple, b: int, prompt: PromptSubstrings):
    """The lexer state after byte ``b``: ``_FAIL`` when a string value or number leaves the
    prompt, ``_UNTRACKED`` when the text is not JSON this lexer follows."""
    mode, stack, escaped, at = state
    if mode == _STR_VALUE:
        if b == _QUOTE and not escaped:
            return (_AFTER, stack, False, 0)
        at = prompt.next[at].get(b, -1)
        return _FAIL if at < 0 else (_STR_VALUE, stack, b == _BACKSLASH and not escaped, at)
    if mode == _STR_KEY:
        if b == _QUOTE and not escaped:
            return (_COLON, stack, False, 0)
        return (_STR_KEY, stack, b == _BACKSLASH and not escaped, 0)
    if mode == _NUMBER:
        if b in _NUMBER_CHARS:
            at = prompt.next[at].get(b, -1)
            return _FAIL if at < 0 else (_NUMBER, stack, False, at)
        mode = _AFTER
    elif mode == _LITERAL:
        if b in _LETTERS:
            return state
        mode = _AFTER
    if b in _WHITESPACE:
        return (mode, stack, False, 0)
    if mode == _VALUE:
        if b == _QUOTE:
            return (_STR_VALUE, stack, False, 0)
        if b in _NUMBER_START:
            at = prompt.next[0].get(b, -1)
            return _FAIL if at < 0 else (_NUMBER, stack, False, at)
        if b == 0x7B:  # {
            return (_KEY, stack + "{", False, 0)
        if b == 0x5B:  # [
            return (_VALUE, stack + "[", False, 0)
        if b == 0x5D and stack.endswith("["):  # ] of an empty array
            return (_AFTER if len(stack) > 1 else _END, stack[:-1], False, 0)
        if b in _LITERAL_START:
            return (_LITERAL, stack, False, 0)
        return _UNTRACKED
    if mode == _KEY:
        if b == _QUOTE:
            return (_STR_KEY, stack, False, 0)
        if b == 0x7D and stack.endswith("{"):  # } of an empty object
            return (_AFTER if len(stack) > 1 else _END, stack[:-1], False, 0)
        return _UNTRACKED
    if mode == _COLON:
        return (_VALUE, stack, False, 0) if b == 0x3A else _UNTRACKED
    if mode == _AFTER:
        if b == 0x2C and stack:  # ,
            return (_VALUE if stack.endswith("[") else _KEY, stack, False, 0)
        if (b == 0x7D and stack.endswith("{")) or (b == 0x5D and stack.endswith("[")):
            return (_AFTER if len(stack) > 1 else _END, stack[:-1], False, 0)
        return _UNTRACKED
    return _UNTRACKED


def _candidates(state: tuple, node_children: dict[int, int], prompt: PromptSubstrings):
    """The (byte, child) pairs worth walking from a trie node in this lexer state."""
    mode, _, escaped, at = state
    if mode == _STR_VALUE:
        nxt = prompt.next[at]
        pairs = [(b, c) for b, c in node_children.items() if b in nxt] if len(nxt) > len(node_children) \
            else [(b, node_children[b]) for b in nxt if b in node_children]
        if not escaped and _QUOTE in node_children and _QUOTE not in nxt:
            pairs.append((_QUOTE, node_children[_QUOTE]))
        return pairs
    if mode == _NUMBER:
        nxt = prompt.next[at]
        pairs = [(b, node_children[b]) for b in nxt if b in node_children and b in _NUMBER_CHARS]
        return pairs + [(b, node_children[b]) for b in _AFTER_BYTES if b in node_children]
    wanted = _VALUE_BYTES if mode == _VALUE else _AFTER_BYTES
    return [(b, node_children[b]) for b in wanted if b in node_children]


class GroundedCursor:
    """One row's place in the JSON it is writing, and the tokens that keep its values in its
    prompt. :meth:`allowed` gives the mask for the next token; :meth:`accept` moves on."""

    def __init__(self, prompt: PromptSubstrings, trie: VocabTrie, memo_size: int = 64) -> None:
        self.prompt, self.trie = prompt, trie
        self.state: tuple = (_VALUE, "", False, 0)
        self.memo: dict[tuple, np.ndarray] = {}
        self.memo_size = memo_size

    @property
    def constrained(self) -> bool:
        return bool(self.state) and self.state[0] not in _FREE

    def allowed(self) -> np.ndarray | None:
        """Boolean mask over the vocabulary, or None where the rule does not restrict the next
        token (inside a key, after a literal, outside JSON)."""
        if not self.constrained:
            return None
        mask = self.memo.get(self.state)
        if mask is not None:
            return mask
        trie, prompt = self.trie, self.prompt
        keep = self.trie.free.copy()
        order = trie.order
        stack = [(0, self.state)]
        while stack:
            node, state = stack.pop()
            for b, child in _candidates(state, trie.children[node], prompt):
                nxt = _step(state, b, prompt)
                if nxt is _FAIL:
                    continue
                if not nxt or nxt[0] in _FREE:  # untracked (the empty state) or free
                    keep[order[trie.lo[child]:trie.hi[child]]] = True
                    continue
                if trie.ends[child]:
                    keep[order[trie.lo[child]:trie.lo[child] + trie.ends[child]]] = True
                if trie.children[child]:
                    stack.append((child, nxt))
        # Worth keeping: string starts repeat at every value of the row (same lexer state).
        if self.state[0] in (_VALUE, _AFTER) and len(self.memo) < self.memo_size:
            self.memo[self.state] = keep
        return keep

    def accept(self, token_id: int) -> None:
        """Move past the token the row chose."""
        state = self.state
        for b in self.trie.token_bytes[token_id]:
            if not state:  # untracked: nothing more to follow
                break
            nxt = _step(state, b, self.prompt)
            # A byte off the prompt (the grammar-only fallback chose it): follow the JSON on,
            # restarting the substring where it left the prompt.
            if nxt is _FAIL:
                nxt = _restart(state, b, self.prompt)
            state = nxt
        self.state = state


def _restart(state: tuple, b: int, prompt: PromptSubstrings) -> tuple:
    mode, stack, escaped, _ = state
    at = prompt.next[0].get(b, 0)
    if mode == _VALUE:  # a number start the prompt does not hold
        return (_NUMBER, stack, False, at)
    return (mode, stack, mode == _STR_VALUE and b == _BACKSLASH and not escaped, at)


def grounded_cursors(prompts: Sequence[str], trie: VocabTrie) -> list[GroundedCursor]:
    """A fresh cursor per prompt (the raw extraction text, not the formatted model input)."""
    return [GroundedCursor(PromptSubstrings(escaped_prompt(p)), trie) for p in prompts]


def mask_to_prompts(scores, cursors: Sequence[GroundedCursor | None]) -> int:
    """Mask ``scores`` (rows x vocab) in place, after the grammar's mask, to the tokens that
    keep each row's values in its prompt; returns how many rows fell back to the grammar
    alone because no token was left."""
    fallbacks = 0
    for k, cursor in enumerate(cursors):
        keep = cursor.allowed() if cursor is not None else None
        if keep is None:
            continue
        row = scores[k]
        masked = row.masked_fill(~torch.from_numpy(keep[: row.shape[0]]).to(row.device), float("-inf"))
        if torch.isinf(masked.max()):
            fallbacks += 1
        else:
            row.copy_(masked)
    return fallbacks


def ungrounded_values(answer, prompt: str) -> list[str]:
    """Paths of the string and number leaves of a parsed ``answer`` that grounded decoding would
    not have let through: their JSON text (a string's inside its quotes) is no substring of the
    prompt as it reads inside JSON. Keys, booleans and nulls are not values copied from a prompt."""
    text = escaped_prompt(prompt).decode("utf-8")
    out: list[str] = []

    def walk(value, path: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]")
        elif isinstance(value, str):
            if json.dumps(value, ensure_ascii=False)[1:-1] not in text:
                out.append(path)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if json.dumps(value) not in text:
                out.append(path)

    walk(answer, "")
    return out
