"""Text classification, measured: the sentiment_lstm architecture trained by nnspec on raw text
(`text(...)`: a vocabulary fitted on the training rows) against scikit-learn's bag of words
(CountVectorizer + LogisticRegression, C by 5-fold CV), on synthetic reviews made here, offline.

The reviews are clauses about a film ("the plot was not dull", "i found the acting truly
wonderful"); a clause's polarity is its adjective's, flipped by a negation right before it
(not, never, hardly), and a clause after "but" counts double. The label is the sign of the sum,
with 5% of labels flipped. A bag of words sees which adjectives and negations occur, not which
adjective a negation belongs to, nor which clause comes after "but": word order matters.

    .venv/bin/python bench/text_sentiment.py                 # 2000 training, 1000 test reviews, 6 epochs
    .venv/bin/python bench/text_sentiment.py --train 4000 --epochs 8
    .venv/bin/python bench/text_sentiment.py --write specs/data/reviews.csv --train 120 --seed 1   # the example's data
"""
from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
import time
from pathlib import Path

POSITIVE = ("good", "great", "excellent", "wonderful", "enjoyable", "brilliant", "superb", "delightful",
            "moving", "charming", "clever", "beautiful", "fun", "gripping", "memorable")
NEGATIVE = ("bad", "awful", "terrible", "boring", "dull", "poor", "horrible", "disappointing", "tedious",
            "clumsy", "weak", "forgettable", "messy", "lifeless", "predictable")
NOUNS = ("movie", "film", "plot", "acting", "story", "cast", "soundtrack", "ending", "script", "direction",
         "dialogue", "pacing", "camera work", "lead actor", "villain", "score", "humour", "finale")
NEGATIONS = ("not", "never", "hardly")
ADVERBS = ("really", "truly", "quite", "very", "rather", "so", "pretty")
FILLER = ("honestly", "overall", "i think", "to be fair", "in the end", "for me", "at times", "frankly",
          "all in all", "if you ask me", "on the whole", "as expected")
TEMPLATES = ("the {noun} was {adj}", "i found the {noun} {adj}", "the {noun} is {adj}",
             "what a {adj} {noun}", "the {noun} felt {adj}", "this {noun} seemed {adj}")


def clause(rng: random.Random) -> tuple[str, int]:
    polarity = rng.choice((1, -1))
    adjective = rng.choice(POSITIVE if polarity > 0 else NEGATIVE)
    if rng.random() < 0.4:
        adjective = f"{rng.choice(ADVERBS)} {adjective}"
    if rng.random() < 0.2:  # "not good" is negative
        adjective, polarity = f"{rng.choice(NEGATIONS)} {adjective}", -polarity
    text = rng.choice(TEMPLATES).format(noun=rng.choice(NOUNS), adj=adjective)
    if text.startswith("what a") and adjective.split()[0] in NEGATIONS:
        text = text.replace("what a", "the", 1) + " one"
    return text, polarity


def review(rng: random.Random) -> tuple[str, int]:
    while True:
        parts, score = [], 0
        for i in range(rng.randint(1, 3)):
            text, polarity = clause(rng)
            weight = 1
            if i > 0:
                joiner = rng.choice(("but", "and", "and", "and"))
                weight = 2 if joiner == "but" else 1
                text = f"{joiner} {text}"
            if rng.random() < 0.3:
                text = f"{rng.choice(FILLER)} {text}"
            parts.append(text)
            score += weight * polarity
        if score != 0:
            return ", ".join(parts) + rng.choice((".", "!", "...", "")), int(score > 0)


def reviews(n: int, seed: int, noise: float = 0.05) -> list[tuple[str, str]]:
    """n (review, label) pairs, label "positive" or "negative"; `noise` of the labels flipped."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        text, positive = review(rng)
        if rng.random() < noise:
            positive = 1 - positive
        out.append((text, "positive" if positive else "negative"))
    return out


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["review", "label"])
        w.writerows(rows)


SPEC = """model SentimentLSTM {{
    input tokens: int[?]
    layers {{
        Embedding(vocab={vocab}, dim={dim}, padding_idx=0)
        Bidirectional(LSTM({units}, return_sequences=true))
        Bidirectional(LSTM({units}))
        Dense(1) -> sigmoid
    }}
    loss      binary_crossentropy
    optimizer Adam(lr={lr})
    metrics   [accuracy]
    train {{
        data text("train.csv", text="review", target="label", max_len=64)
        epochs {epochs}
        batch_size 32
        validation 0.1
        seed {seed}
    }}
}}
"""


def bag_of_words(train: list[tuple[str, str]], test: list[tuple[str, str]]) -> float:
    """scikit-learn's baseline: word counts (nnspec's tokenizer pattern) + logistic regression, C by 5-fold CV."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV

    from nnspec.train.text import TOKEN

    vectorizer = CountVectorizer(token_pattern=TOKEN, lowercase=True)
    x = vectorizer.fit_transform([t for t, _ in train])
    grid = {"C": [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0]}
    model = GridSearchCV(LogisticRegression(max_iter=2000), grid, cv=5).fit(x, [y for _, y in train])
    return float(model.score(vectorizer.transform([t for t, _ in test]), [y for _, y in test]))


def lstm(train: list[tuple[str, str]], test: list[tuple[str, str]], folder: Path, *, epochs: int, seed: int,
         vocab: int = 200, dim: int = 32, units: int = 32, lr: float = 0.003) -> dict:
    """nnspec: the spec above trained on train.csv; best.pt (by validation loss) evaluated on test.csv."""
    import torch

    from nnspec.pipeline import check_text
    from nnspec.train.run import evaluate_spec, train_spec

    torch.set_num_threads(1)  # a small LSTM: more threads only contend (10x slower on a loaded 2-core machine)
    write_csv(folder / "train.csv", train)
    write_csv(folder / "test.csv", test)
    source = SPEC.format(vocab=vocab, dim=dim, units=units, lr=lr, epochs=epochs, seed=seed)
    spec = folder / "sentiment.nn"
    spec.write_text(source, encoding="utf-8")
    result = check_text(source, str(spec))
    started = time.perf_counter()
    run = train_spec(result, out_dir=folder / "run")
    seconds = time.perf_counter() - started
    config = result.run_config(data=f'text("{folder / "test.csv"}", text="review", target="label")')
    scores = evaluate_spec(config, str(folder / "run" / "best.pt"), device="cpu")
    return {"accuracy": scores["accuracy"], "seconds": seconds, "best_epoch": run.best["epoch"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", type=Path, help="only write --train reviews to this CSV file")
    args = parser.parse_args(argv)
    if args.write:
        write_csv(args.write, reviews(args.train, args.seed))
        return 0
    data = reviews(args.train + args.test, args.seed)
    train, test = data[:args.train], data[args.train:]
    bow = bag_of_words(train, test)
    with tempfile.TemporaryDirectory() as tmp:
        net = lstm(train, test, Path(tmp), epochs=args.epochs, seed=args.seed)
    print(f"{args.train} training and {args.test} test reviews, seed {args.seed}")
    print(f"bag of words + logistic regression (scikit-learn): test accuracy {bow:.4f}")
    print(f"sentiment_lstm architecture (nnspec, text(...)):   test accuracy {net['accuracy']:.4f} "
          f"(best epoch {net['best_epoch']} of {args.epochs}, trained in {net['seconds']:.0f} s)")
    print(f"difference: {net['accuracy'] - bow:+.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
