"""The llama.cpp process of :func:`scaling.deploy.llamacpp.evaluate_gguf`: one GGUF, one stream.

    python -m scaling.deploy.worker        # spoken to over stdin/stdout, one JSON object a line

It imports llama.cpp and nothing heavy (no torch, no transformers), so its peak resident
memory is what a device running the file needs, plus a bare Python interpreter. Everything
else (prompts, tokenizer, when to stop, scoring) stays in the parent process.

Protocol (parent -> worker, worker -> parent):

- ``{"cmd": "load", "path", "n_ctx", "n_threads", "n_batch", "kv_f32", "extra_buffers"}`` -> ``{"ok": true,
  "load_s", "rss_mb_python", "rss_mb_before_load", "n_ctx", "n_ctx_train", "n_vocab", "eos",
  "extra_buffers", "system_info"}`` (peak resident memory of the bare interpreter, and with
  llama.cpp imported; whether the model was loaded with llama.cpp's extra buffer types, as
  read back from its model parameters, and llama.cpp's own list of the CPU features it uses)
- ``{"cmd": "check_grammar", "grammar"}`` -> ``{"ok": bool}`` (does llama.cpp parse it)
- ``{"cmd": "tokenize", "text", "add_bos"}`` -> ``{"ids": [...]}`` (llama.cpp's own tokenizer)
- ``{"cmd": "generate", "ids", "grammar"}``: greedy decoding of the prompt ``ids`` under the
  GBNF ``grammar`` (or none; see :class:`_GreedySampler`). For every token the worker
  sends ``{"token": id}`` and waits for one line: ``c`` (continue) or ``s`` (stop); the parent
  decides, with the same stop rule as the PyTorch evaluation. Then ``{"done": true, "n",
  "prompt_tokens", "ttft_s", "total_s", "grammar_full_passes"}``.
- ``{"cmd": "stats"}`` -> ``{"peak_rss_mb"}``; ``{"cmd": "quit"}``.

Errors are sent as ``{"error": "..."}`` and end the worker.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time


def _peak_rss_mb() -> float:
    """Peak resident memory of this process image. On Linux ``VmHWM`` of the current address
    space: ``ru_maxrss`` would also count the parent's pages at fork (Linux carries the
    pre-exec high-water mark over exec), i.e. the parent's torch."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass  # no /proc (macOS, some containers): fall back to getrusage below
    import resource

    # ru_maxrss is KiB on Linux, bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20, 1)


class _GreedySampler:
    """Greedy decoding under an optional GBNF grammar, in llama.cpp's ``common_sampler`` order:
    the unconstrained argmax is checked against the grammar first, and the grammar filters the
    whole vocabulary only when it rejects that token. The chosen token is the argmax over the
    tokens the grammar allows either way (ties to the lowest id, as PyTorch's argmax and
    llama.cpp's greedy sampler); llama-cpp-python's own ``generate`` filters all 49,152
    candidates at every step, about as costly as the forward pass of a 135M model."""

    def __init__(self, llm, grammar: str | None) -> None:
        import ctypes

        import llama_cpp
        import numpy as np
        from llama_cpp._internals import LlamaTokenDataArray

        self.np, self.ll, self.ctypes = np, llama_cpp, ctypes
        self.ctx = llm._ctx.ctx
        self.n_vocab = llm.n_vocab()
        self.full_passes = 0
        self.grammar = None
        if grammar is not None:
            self.grammar = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, grammar.encode("utf-8"), b"root")
            if not self.grammar:
                raise ValueError("llama.cpp could not parse the grammar")
            self.one = LlamaTokenDataArray(n_vocab=1)
            self.full = LlamaTokenDataArray(n_vocab=self.n_vocab)

    def next(self) -> int:
        np, ll = self.np, self.ll
        logits = np.ctypeslib.as_array(ll.llama_get_logits_ith(self.ctx, -1), shape=(self.n_vocab,))
        token = int(np.argmax(logits))
        if self.grammar is not None:
            self.one.copy_logits(logits[token:token + 1])
            self.one.candidates_data.id[0] = token
            ll.llama_sampler_apply(self.grammar, self.ctypes.byref(self.one.candidates))
            if not np.isfinite(self.one.candidates_data.logit[0]):  # rejected: filter everything
                self.full.copy_logits(logits)
                ll.llama_sampler_apply(self.grammar, self.ctypes.byref(self.full.candidates))
                token = int(np.argmax(self.full.candidates_data.logit))
                self.full_passes += 1
            ll.llama_sampler_accept(self.grammar, token)
        return token

    def close(self) -> None:
        if self.grammar:
            self.ll.llama_sampler_free(self.grammar)
            self.grammar = None


@contextlib.contextmanager
def _extra_buffers(enabled: bool):
    """Load models with llama.cpp's extra buffer types (``use_extra_bufts``: weight repacking,
    and the AMX buffers on Intel CPUs with AMX) on or off.

    ``Llama()`` takes no such argument: it fills ``llama_model_default_params()`` and loads at
    once. So, for the duration of one ``Llama()`` call, the defaults it asks for carry the
    setting. A binding whose model parameters lack the field fails loudly rather than load
    with the path that may crash."""
    import llama_cpp.llama as binding

    default = binding.llama_cpp.llama_model_default_params
    if not any(name == "use_extra_bufts" for name, _ in default().__class__._fields_):
        raise RuntimeError("this llama-cpp-python has no model parameter use_extra_bufts; "
                           "install the pinned version (pyproject.toml, extra 'deploy')")

    def params():
        p = default()
        p.use_extra_bufts = bool(enabled)
        return p

    binding.llama_cpp.llama_model_default_params = params
    try:
        yield
    finally:
        binding.llama_cpp.llama_model_default_params = default


def main() -> int:
    # The protocol owns the real stdout; anything llama.cpp prints goes to stderr instead.
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    send = lambda obj: proto.write(json.dumps(obj) + "\n")  # noqa: E731
    bare = _peak_rss_mb()  # the interpreter alone
    try:
        import llama_cpp
        from llama_cpp import Llama
    except ImportError as exc:
        send({"error": f"llama-cpp-python is not importable: {exc}"})
        return 1
    llm = None
    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg.get("cmd")
        try:
            if cmd == "load":
                before = _peak_rss_mb()
                t0 = time.perf_counter()
                kv = {}
                if msg.get("kv_f32"):
                    kv = {"type_k": llama_cpp.GGML_TYPE_F32, "type_v": llama_cpp.GGML_TYPE_F32}
                with _extra_buffers(bool(msg.get("extra_buffers", True))):
                    llm = Llama(model_path=msg["path"], n_ctx=int(msg["n_ctx"]), n_threads=int(msg["n_threads"]),
                                n_threads_batch=int(msg["n_threads"]), n_batch=int(msg["n_batch"]), seed=0,
                                verbose=False, **kv)
                send({"ok": True, "load_s": round(time.perf_counter() - t0, 3), "rss_mb_python": bare,
                      "rss_mb_before_load": before,
                      "n_ctx": llm.n_ctx(), "n_ctx_train": llm._model.n_ctx_train(), "n_vocab": llm.n_vocab(),
                      "eos": llm.token_eos(), "extra_buffers": bool(llm.model_params.use_extra_bufts),
                      "system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip()})
            elif cmd == "check_grammar":
                # A grammar llama.cpp cannot parse gives a NULL sampler, which the binding would add
                # to its chain and crash on: parse it once here and free it.
                sampler = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, msg["grammar"].encode("utf-8"),
                                                               b"root")
                if sampler:
                    llama_cpp.llama_sampler_free(sampler)
                send({"ok": bool(sampler)})
            elif cmd == "tokenize":
                send({"ids": llm.tokenize(msg["text"].encode("utf-8"), add_bos=bool(msg.get("add_bos")), special=True)})
            elif cmd == "generate":
                text = msg.get("grammar")
                llm.reset()  # no prefix reuse between examples: each one is timed from scratch
                ids = list(msg["ids"])
                n, ttft = 0, None
                t0 = time.perf_counter()
                llm.eval(ids)
                sampler = _GreedySampler(llm, text)
                try:
                    while True:
                        token = sampler.next()
                        if ttft is None:
                            ttft = time.perf_counter() - t0
                        n += 1
                        send({"token": token})
                        if sys.stdin.readline().strip() != "c":
                            break
                        llm.eval([token])
                finally:
                    sampler.close()
                send({"done": True, "n": n, "prompt_tokens": len(ids), "ttft_s": ttft,
                      "total_s": time.perf_counter() - t0, "grammar_full_passes": sampler.full_passes})
            elif cmd == "stats":
                send({"peak_rss_mb": _peak_rss_mb()})
            elif cmd == "quit":
                break
            else:
                send({"error": f"unknown command {cmd!r}"})
                return 2
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
            send({"error": f"{type(exc).__name__}: {exc}"})
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
