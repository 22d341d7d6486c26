"""Chapter 6: the sentiment classifiers, measured: probabilities, the bag-of-words baseline, the
accuracy on each kind of sentence, and where the classifier's attention goes.

The sentences come from `tfm_edu.data.sentences` (negation, contrast with "but"); the models are
`BERTForSequenceClassification`s (any model returning `.logits` (B, 2) works).
"""

from __future__ import annotations

import numpy as np
import torch

from tfm_edu.analysis.probes import bert_attention_maps
from tfm_edu.data import sentences
from tfm_edu.tokenize import WordPiece

__all__ = [
    "sentiment_probabilities",
    "bag_of_words_probabilities",
    "accuracy_by_kind",
    "attention_to_negator",
    "attention_to_second_clause",
]


@torch.no_grad()
def sentiment_probabilities(model, tokenizer: WordPiece, texts: list[str]) -> np.ndarray:
    """P(positive) for each text, shape (N,)."""
    was_training = model.training
    model.eval()
    batch = tokenizer.batch_encode(texts)
    logits = model(batch["input_ids"], batch["attention_mask"]).logits  # (N, 2)
    model.train(was_training)
    return logits.softmax(-1)[:, 1].numpy()


def bag_of_words_probabilities(train_rows, texts: list[str], seed: int = 0) -> np.ndarray:
    """Logistic regression on word counts, fitted on `train_rows`; P(positive) for each text."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = CountVectorizer(token_pattern=r"\S+")
    counts = vectorizer.fit_transform([row.text for row in train_rows])  # (N, words)
    classifier = LogisticRegression(max_iter=2000, random_state=seed)
    classifier.fit(counts, [row.label for row in train_rows])
    return classifier.predict_proba(vectorizer.transform(texts))[:, 1]


def accuracy_by_kind(rows, probabilities) -> dict[str, float]:
    """Accuracy on each kind of sentence (single clause / and / but) and on negated ones.

    Args:
        rows: `tfm_edu.data.sentences` rows (with `.kind`, `.negations`, `.label`).
        probabilities: (N,) P(positive) for each row.

    Returns:
        {"accuracy_single", "accuracy_and", "accuracy_but", "accuracy_negated"}.
    """
    predicted = np.asarray(probabilities) >= 0.5
    groups = {kind: [r.kind == kind for r in rows] for kind in ("single", "and", "but")}
    groups["negated"] = [r.negations > 0 for r in rows]
    labels = np.array([r.label for r in rows])
    return {
        f"accuracy_{name}": float((predicted[np.array(m)] == labels[np.array(m)]).mean())
        for name, m in groups.items()
    }


def attention_to_negator(model, tokenizer: WordPiece, rows) -> np.ndarray:
    """(L, H): average attention from a negated adjective to its negator ("not"/"never"),
    over every negated clause of `rows` (intensifiers in between are skipped)."""
    weights = []
    for row in rows:
        maps = bert_attention_maps(model, tokenizer, row.text)
        tokens = maps.query_tokens
        for i, token in enumerate(tokens):
            if token in sentences.POSITIVE + sentences.NEGATIVE:
                j = i - 1
                while tokens[j] in sentences.INTENSIFIERS:
                    j -= 1
                if tokens[j] in sentences.NEGATORS:
                    weights.append(maps.attentions[:, :, i, j])  # (L, H)
    if not weights:
        raise ValueError("no negated clause in these rows")
    return np.mean(weights, axis=0)  # (L, H)


def attention_to_second_clause(model, tokenizer: WordPiece, rows, kind: str) -> float:
    """In "A and B" / "A but B" sentences (`kind`), the share of the adjectives' attention (last
    layer, mean over heads, ordinary tokens only) that goes to clause B."""
    shares = []
    for row in [r for r in rows if r.kind == kind]:
        maps = bert_attention_maps(model, tokenizer, row.text)
        tokens = maps.query_tokens
        split = tokens.index(kind)
        last_layer = maps.attentions[-1].mean(axis=0)  # (T, T)
        for i, token in enumerate(tokens):
            if token in sentences.POSITIVE + sentences.NEGATIVE:
                shares.append(last_layer[i, split + 1 : -1].sum() / last_layer[i, 1:-1].sum())
    if not shares:
        raise ValueError(f"no {kind!r} sentence in these rows")
    return float(np.mean(shares))
