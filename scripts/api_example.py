"""The Python API in one run: train, load back, predict, recommend, sample.

    python scripts/api_example.py [WORKDIR]      (default runs/api-example)

Trains a small synthetic run (a minute or two on a laptop CPU), so it needs
no download. Running it again on the same WORKDIR reuses the finished run
(it only writes its report again).
"""

import sys

import ratinggan


def main(workdir: str) -> None:
    config = ratinggan.make_config(
        synthetic={"num_users": 200, "num_items": 300, "num_ratings": 10_000},
        regressor={"epochs": 10},
        gan={"epochs": 3},
        eval={"tstr": False},
    )
    model = ratinggan.train(config, workdir, progress=True)
    model = ratinggan.load(workdir)  # what a later session would do

    users, movies = [0, 0, 1], [10, 20, 30]
    print("predicted ratings:", model.predict(users, movies).round(2))
    print("rating distributions over", model.dataset.levels.tolist())
    print(model.distribution(users, movies).round(3))

    print("top 5 unseen movies for user ID 1:")
    print(model.recommend(1, k=5, raw_ids=True).to_string(index=False))

    table = model.sample_dataset(seed=0)
    print(f"sampled {len(table)} ratings for the training pairs:")
    print(table.head().to_string(index=False))
    print(
        "rating counts:", table["rating"].value_counts().sort_index().to_dict()
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/api-example")
