"""Load GPT-2, run one prompt, print the top next tokens and the shape of every cached tensor.

    python scripts/demo_gpt2np.py                                   # GPT-2 small from the Hub
    python scripts/demo_gpt2np.py --model path/to/folder --prompt "The dog"

(after `pip install -e .`, or from the repository root with PYTHONPATH=.)
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import gpt2np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gpt2", help="Hub name, local folder or .safetensors file (default: gpt2)")
    parser.add_argument("--tokenizer", help="where the tokenizer is (default: same as --model)")
    parser.add_argument("--prompt", default="The quick brown fox jumps over the lazy")
    parser.add_argument("--top", type=int, default=10, help="how many next tokens to show")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args()

    try:
        model = gpt2np.load_model(args.model, dtype=args.dtype)
        tok = gpt2np.load_tokenizer(args.tokenizer or args.model)
        ids = tok.encode(args.prompt)
        logits, cache = model.run_with_cache(ids)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    print(model)
    print(f"prompt: {args.prompt!r} -> {len(ids)} tokens {ids.tolist()}")
    last = logits[-1].astype(np.float64)
    probs = np.exp(last - last.max())
    probs /= probs.sum()
    print(f"\ntop {args.top} next tokens:")
    for i in np.argsort(-probs)[: args.top]:
        print(f"  {probs[i]:7.2%}  {tok.token_strings([i])[0]!r}")
    print(f"\n{cache}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
